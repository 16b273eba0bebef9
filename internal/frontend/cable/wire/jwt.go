package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWT identification ("jid"): a client proves who it is with a token signed
// by the application, which spares the backend a connect call. The token
// travels in the query parameter JIDParam or the header JIDHeader (anycable-go
// looks at the header first) and is an HMAC-signed JWT whose "ext" claim is a
// string holding the JSON connection identifiers; "exp" is optional, as in
// anycable-go (expiry is the issuer's responsibility).
const (
	JIDParam  = "jid"
	JIDHeader = "X-JID"
)

// MaxTokenLen bounds the tokens VerifyJID reads.
const MaxTokenLen = 8 << 10

// Errors of VerifyJID. On ErrTokenExpired the caller disconnects with
// ReasonTokenExpired so the client fetches a new token; on ErrTokenInvalid
// with ReasonUnauthorized.
var (
	ErrTokenExpired = errors.New("token expired")
	ErrTokenInvalid = errors.New("invalid token")
)

var jidMethods = []string{"HS256", "HS384", "HS512"}

// VerifyJID verifies token with secret at time now and returns the
// connection identifiers (a JSON text, as the application put it in "ext")
// and the token's expiry (zero when it has none). anycable-go accepts every
// HMAC algorithm, so HS384 and HS512 are accepted too; nothing else, and
// never "none". An expired token is reported only when its signature is
// good, so ErrTokenExpired never reveals anything about a forged token.
func VerifyJID(secret []byte, token string, now time.Time) (identifiers string, expires time.Time, err error) {
	if len(secret) == 0 {
		return "", time.Time{}, ErrNoSecret
	}
	if len(token) > MaxTokenLen {
		return "", time.Time{}, fmt.Errorf("%w: too long", ErrTokenInvalid)
	}
	p := jwt.NewParser(jwt.WithValidMethods(jidMethods), jwt.WithTimeFunc(func() time.Time { return now }))
	claims := jwt.MapClaims{}
	_, err = p.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return secret, nil })
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return "", time.Time{}, ErrTokenExpired
		}
		return "", time.Time{}, fmt.Errorf("%w: %v", ErrTokenInvalid, err)
	}
	ext, ok := claims["ext"].(string)
	if !ok || !json.Valid([]byte(ext)) {
		return "", time.Time{}, fmt.Errorf("%w: ext is not a string holding JSON", ErrTokenInvalid)
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		expires = exp.Time
	}
	return ext, expires, nil
}
