// Package authtest mints tokens for tests of packages that authenticate
// clients. Its helpers panic on error, which in a test means a broken test,
// not a condition to handle.
package authtest

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"maps"

	"github.com/golang-jwt/jwt/v5"
)

// Secret is an HS256 secret for tests; give it to auth.Config.Secret and to
// SignHS256.
var Secret = []byte("huddle-test-secret-0123456789abcdef")

// SignHS256 returns claims signed with HS256 and secret. Claims are the JWT
// claims as they appear in the token, e.g.
//
//	authtest.SignHS256(authtest.Secret, map[string]any{
//		"sub":     "alice",
//		"exp":     time.Now().Add(time.Hour).Unix(),
//		"streams": map[string][]string{"doc:1": {"sub", "pub"}},
//	})
func SignHS256(secret []byte, claims map[string]any) string {
	return sign(jwt.SigningMethodHS256, secret, claims)
}

// SignRS256 returns claims signed with RS256 and key.
func SignRS256(key *rsa.PrivateKey, claims map[string]any) string {
	return sign(jwt.SigningMethodRS256, key, claims)
}

// SignES256 returns claims signed with ES256 and key, which must be on P-256.
func SignES256(key *ecdsa.PrivateKey, claims map[string]any) string {
	return sign(jwt.SigningMethodES256, key, claims)
}

// Unsigned returns claims in a token with alg "none", which servers must
// refuse.
func Unsigned(claims map[string]any) string {
	return sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims)
}

func sign(method jwt.SigningMethod, key any, claims map[string]any) string {
	c := jwt.MapClaims{} // a nil map would encode as "null"
	maps.Copy(c, claims)
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		panic("authtest: " + err.Error())
	}
	return s
}
