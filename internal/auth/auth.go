// Package auth turns connection tokens into an identity with stream grants,
// and decides with the server's stream rules what each client may do.
//
// Tokens are JWTs signed with HS256 (a shared secret) or RS256/ES256 (public
// keys); no other algorithm, and never "none", is accepted. The claims are
//
//	sub      user id; required unless anonymous clients are allowed
//	exp      expiry (optional; a JSON number, as are nbf and iat)
//	aud, iss checked against Config.Audience and Config.Issuer when set
//	info     public user info shown in presence (optional JSON object)
//	streams  stream pattern -> ops, e.g. {"doc:42": ["sub","pub"], "user:7:*": ["sub"]}
//
// A pattern is an exact stream name or a prefix ending in '*'. Server-side
// rules (see Rule) grant ops by stream name prefix and set per-stream
// options. Token grants and rules combine and denial wins; see
// Authenticator.Allowed.
package auth

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors returned (wrapped, with detail) by Verify and Refresh. A client that
// gets ErrExpired may reconnect after refreshing its token; ErrUnauthorized
// is final.
var (
	ErrUnauthorized = errors.New("unauthorized")
	ErrExpired      = errors.New("token expired")
)

// ErrConfig is returned (wrapped) by New for a Config it cannot use.
var ErrConfig = errors.New("invalid auth config")

// Config configures an Authenticator. At least one of Secret, PublicKeys,
// AllowAnonymous and ConnectHook must be set.
type Config struct {
	// Secret verifies HS256 tokens (--secret). Empty disables HS256.
	Secret []byte
	// PublicKeys verify RS256 (*rsa.PublicKey, at least 2048 bits) and ES256
	// (*ecdsa.PublicKey on P-256) tokens (--jwt-public-key); a token is
	// accepted when any key of its algorithm verifies it, which allows key
	// rotation. ParsePublicKeyPEM reads them. Empty disables both algorithms.
	PublicKeys []crypto.PublicKey
	// AllowAnonymous lets clients connect without a token, and accepts tokens
	// without sub (--allow-anonymous). Such identities have User "". Default
	// false.
	AllowAnonymous bool
	// ConnectHook says that an application vouches for clients whose token
	// this Authenticator does not verify (--connect-hook; see NewIdentity),
	// so that no secret or key is needed. It changes nothing in Verify.
	// Default false.
	ConnectHook bool
	// Leeway is the clock skew tolerated when checking exp and nbf. Default 0.
	Leeway time.Duration
	// Audience, when set, is required in every token's aud claim (a string
	// or an array of strings); a token without it is refused
	// (--jwt-audience). Default: aud is not checked.
	Audience string
	// Issuer, when set, must equal every token's iss claim; a token without
	// iss is refused (--jwt-issuer). Default: iss is not checked.
	Issuer string
	// Rules are the server-side stream rules, in flag order. Default none:
	// only token grants allow anything.
	Rules []Rule
	// DefaultHistorySize is the history size of streams no rule sets one for.
	// 0 means DefaultHistorySize (100); HistoryDisabled turns history off.
	DefaultHistorySize int
	// DefaultHistoryTTL is the history TTL of streams no rule sets one for.
	// 0 means DefaultHistoryTTL (5 minutes).
	DefaultHistoryTTL time.Duration
}

// Authenticator verifies tokens and answers access questions. It is immutable
// after New and safe for concurrent use.
type Authenticator struct {
	anonymous   bool
	parser      *jwt.Parser // nil when no token can be verified
	secret      []byte
	rsaKeys     any // a key or a jwt.VerificationKeySet; nil if none
	ecKeys      any
	rules       []rule // longest prefix first; see compileRules
	historySize int
	historyTTL  time.Duration
}

// New returns an Authenticator for cfg.
func New(cfg Config) (*Authenticator, error) {
	if len(cfg.Secret) == 0 && len(cfg.PublicKeys) == 0 && !cfg.AllowAnonymous && !cfg.ConnectHook {
		return nil, fmt.Errorf("auth: %w: no way to authenticate clients: set --secret (HS256), --jwt-public-key (RS256/ES256), --connect-hook or --allow-anonymous", ErrConfig)
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("auth: %w: negative leeway %v", ErrConfig, cfg.Leeway)
	}
	if cfg.DefaultHistorySize < HistoryDisabled {
		return nil, fmt.Errorf("auth: %w: default history size %d: want >= 0 or HistoryDisabled", ErrConfig, cfg.DefaultHistorySize)
	}
	if cfg.DefaultHistoryTTL < 0 {
		return nil, fmt.Errorf("auth: %w: negative default history TTL %v", ErrConfig, cfg.DefaultHistoryTTL)
	}
	a := &Authenticator{
		anonymous:   cfg.AllowAnonymous,
		historySize: cmp.Or(cfg.DefaultHistorySize, DefaultHistorySize),
		historyTTL:  cmp.Or(cfg.DefaultHistoryTTL, DefaultHistoryTTL),
	}
	var methods []string
	if len(cfg.Secret) > 0 {
		a.secret = bytes.Clone(cfg.Secret)
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	var rsaKeys, ecKeys []jwt.VerificationKey
	for i, k := range cfg.PublicKeys {
		if err := checkPublicKey(k); err != nil {
			return nil, fmt.Errorf("auth: %w: public key %d: %w", ErrConfig, i, err)
		}
		switch k := k.(type) {
		case *rsa.PublicKey:
			rsaKeys = append(rsaKeys, k)
		case *ecdsa.PublicKey:
			ecKeys = append(ecKeys, k)
		}
	}
	if len(rsaKeys) > 0 {
		a.rsaKeys = keySet(rsaKeys)
		methods = append(methods, jwt.SigningMethodRS256.Alg())
	}
	if len(ecKeys) > 0 {
		a.ecKeys = keySet(ecKeys)
		methods = append(methods, jwt.SigningMethodES256.Alg())
	}
	if len(methods) > 0 {
		opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithLeeway(cfg.Leeway)}
		if cfg.Audience != "" {
			opts = append(opts, jwt.WithAudience(cfg.Audience))
		}
		if cfg.Issuer != "" {
			opts = append(opts, jwt.WithIssuer(cfg.Issuer))
		}
		a.parser = jwt.NewParser(opts...)
	}
	var err error
	if a.rules, err = compileRules(cfg.Rules); err != nil {
		return nil, err
	}
	return a, nil
}

// keySet avoids the set's loop for the common single key.
func keySet(keys []jwt.VerificationKey) any {
	if len(keys) == 1 {
		return keys[0]
	}
	return jwt.VerificationKeySet{Keys: keys}
}

// keyFunc hands jwt the keys of the token's algorithm only, so that a key of
// one kind can never verify a token of another (algorithm confusion). The
// parser has already refused algorithms not configured.
func (a *Authenticator) keyFunc(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case jwt.SigningMethodHS256.Alg():
		return a.secret, nil
	case jwt.SigningMethodRS256.Alg():
		return a.rsaKeys, nil
	case jwt.SigningMethodES256.Alg():
		return a.ecKeys, nil
	}
	return nil, fmt.Errorf("signing method %s is not accepted", t.Method.Alg())
}

// Identity is who a connection is, as its token says. It is immutable and
// safe to share between goroutines.
type Identity struct {
	// User is the token's sub; "" for an anonymous client.
	User string
	// Expires is the token's exp; zero when the token does not expire.
	Expires time.Time
	// Info is the token's info claim, a JSON object, as raw bytes; nil when
	// absent. Callers must not modify it.
	Info json.RawMessage

	grants []grant
}

// Anonymous reports whether id has no user.
func (id *Identity) Anonymous() bool { return id.User == "" }

// granted reports whether the token grants every op in bit on stream. A nil
// id grants nothing.
func (id *Identity) granted(bit Ops, stream string) bool {
	if id == nil {
		return false
	}
	for i := range id.grants {
		g := &id.grants[i]
		if g.ops&bit == bit && g.matches(stream) {
			return true
		}
	}
	return false
}

// claims are the token claims Huddle reads; jwt validates exp, nbf, aud and
// iss.
type claims struct {
	jwt.RegisteredClaims
	Info    json.RawMessage     `json:"info,omitempty"`
	Streams map[string][]string `json:"streams,omitempty"`
}

// UnmarshalJSON refuses time claims that are not JSON numbers before jwt
// reads them: jwt's NumericDate also accepts a string of digits, so an
// "exp":"1767225600" written by a buggy issuer would pass, and a null exp
// would silently mean "never expires". RFC 7519 says a NumericDate is a
// number; anything else is a broken token, not a lenient one.
func (c *claims) UnmarshalJSON(b []byte) error {
	var times struct {
		Exp json.RawMessage `json:"exp"`
		Nbf json.RawMessage `json:"nbf"`
		Iat json.RawMessage `json:"iat"`
	}
	if err := json.Unmarshal(b, &times); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"exp", times.Exp}, {"nbf", times.Nbf}, {"iat", times.Iat}} {
		if f.raw != nil && !isJSONNumber(f.raw) {
			return fmt.Errorf("%s claim is not a number: %.40s", f.name, f.raw)
		}
	}
	type plain claims // without this method, so the call below does not recurse
	return json.Unmarshal(b, (*plain)(c))
}

// isJSONNumber reports whether raw, a JSON value as json.RawMessage holds
// it, is a number literal.
func isJSONNumber(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9')
}

// Verify checks token and returns the identity it carries. An empty token
// yields an anonymous identity when anonymous clients are allowed. Errors wrap
// ErrExpired for a token past its exp (plus leeway), and ErrUnauthorized for
// anything else: malformed, bad signature, an algorithm not configured, a
// missing sub, an exp, nbf or iat that is not a number, an aud or iss other
// than configured, or an invalid info or streams claim.
func (a *Authenticator) Verify(token string) (*Identity, error) {
	if token == "" {
		if a.anonymous {
			return &Identity{}, nil
		}
		return nil, fmt.Errorf("auth: %w: no token", ErrUnauthorized)
	}
	if a.parser == nil {
		return nil, fmt.Errorf("auth: %w: server accepts anonymous clients only, not tokens", ErrUnauthorized)
	}
	var c claims
	if _, err := a.parser.ParseWithClaims(token, &c, a.keyFunc); err != nil {
		// jwt checks the signature before the claims, so a token reported
		// expired is genuine.
		if errors.Is(err, jwt.ErrTokenExpired) && c.ExpiresAt != nil {
			return nil, fmt.Errorf("auth: %w at %s", ErrExpired, c.ExpiresAt.UTC().Format(time.RFC3339))
		}
		return nil, fmt.Errorf("auth: %w: %v", ErrUnauthorized, err)
	}
	if c.Subject == "" && !a.anonymous {
		return nil, fmt.Errorf("auth: %w: token has no sub", ErrUnauthorized)
	}
	var exp time.Time
	if c.ExpiresAt != nil {
		exp = c.ExpiresAt.Time
	}
	return newIdentity(c.Subject, exp, c.Info, c.Streams, "claim")
}

// NewIdentity returns the identity an application vouched for (a connect
// hook's answer) rather than a token: user ("" for anonymous), expiry (zero:
// none), info (a JSON object, or empty or null for none) and stream grants
// in the form of a token's streams claim. They are checked as Verify checks
// a token's claims; errors wrap ErrUnauthorized.
func NewIdentity(user string, expires time.Time, info json.RawMessage, streams map[string][]string) (*Identity, error) {
	return newIdentity(user, expires, info, streams, "field")
}

// newIdentity checks info and streams; what names them in errors ("claim"
// or "field") depends on where they came from.
func newIdentity(user string, expires time.Time, info json.RawMessage, streams map[string][]string, what string) (*Identity, error) {
	id := &Identity{User: user, Expires: expires}
	if info := bytes.TrimSpace(info); len(info) > 0 && !bytes.Equal(info, []byte("null")) {
		if info[0] != '{' || !json.Valid(info) {
			return nil, fmt.Errorf("auth: %w: info %s is not a JSON object", ErrUnauthorized, what)
		}
		id.Info = info
	}
	if len(streams) > 0 {
		id.grants = make([]grant, 0, len(streams))
		for pattern, names := range streams {
			if !ValidStream(pattern) {
				return nil, fmt.Errorf("auth: %w: streams %s: invalid pattern %q", ErrUnauthorized, what, pattern)
			}
			var ops Ops
			for _, name := range names {
				op, err := ParseOp(name)
				if err != nil {
					return nil, fmt.Errorf("auth: %w: streams %s %q: %w", ErrUnauthorized, what, pattern, err)
				}
				ops |= 1 << op
			}
			id.grants = append(id.grants, newGrant(pattern, ops))
		}
	}
	return id, nil
}

// Refresh verifies token as a replacement for old's token and returns the new
// identity. The new token must be for the same user; it may change exp, info
// and grants.
func (a *Authenticator) Refresh(old *Identity, token string) (*Identity, error) {
	if old == nil {
		return nil, fmt.Errorf("auth: %w: nothing to refresh", ErrUnauthorized)
	}
	id, err := a.Verify(token)
	if err != nil {
		return nil, err
	}
	if id.User != old.User {
		return nil, fmt.Errorf("auth: %w: refresh token is for another user", ErrUnauthorized)
	}
	return id, nil
}
