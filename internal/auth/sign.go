package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SignHS256 mints an HS256 token for user sub, as --dev mode and tests do.
// A zero exp leaves the token without expiry; nil info and streams leave
// those claims out. Streams are checked as Verify checks them, so a token
// minted here is one Verify accepts.
func SignHS256(secret []byte, sub string, exp time.Time, info map[string]any, streams map[string][]string) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("auth: sign: empty secret")
	}
	c := jwt.MapClaims{}
	if sub != "" {
		c["sub"] = sub
	}
	if !exp.IsZero() {
		c["exp"] = exp.Unix()
	}
	if info != nil {
		c["info"] = info
	}
	if streams != nil {
		for pattern, ops := range streams {
			if !ValidStream(pattern) {
				return "", fmt.Errorf("auth: sign: invalid stream pattern %q", pattern)
			}
			for _, op := range ops {
				if _, err := ParseOp(op); err != nil {
					return "", fmt.Errorf("auth: sign: streams %q: %w", pattern, err)
				}
			}
		}
		c["streams"] = streams
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return s, nil
}
