package wire

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerifyJID(t *testing.T) {
	secret := []byte("very-secret")
	now := time.Unix(1_800_000_000, 0)
	sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		t.Helper()
		s, err := jwt.NewWithClaims(method, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ids := `{"user_id":42}`
	exp := now.Add(time.Minute)
	tests := []struct {
		name    string
		secret  []byte
		token   string
		ids     string
		expires time.Time
		err     error
	}{
		{"good", secret, sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"ext": ids, "exp": exp.Unix()}), ids, exp, nil},
		{"HS512", secret, sign(jwt.SigningMethodHS512, secret, jwt.MapClaims{"ext": ids, "exp": exp.Unix()}), ids, exp, nil},
		{"no exp", secret, sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"ext": ids}), ids, time.Time{}, nil},
		{"expired", secret, sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"ext": ids, "exp": now.Add(-time.Second).Unix()}), "", time.Time{}, ErrTokenExpired},
		{"expires now", secret, sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"ext": ids, "exp": now.Unix()}), "", time.Time{}, ErrTokenExpired},
		{"expired and forged", secret, sign(jwt.SigningMethodHS256, []byte("other"), jwt.MapClaims{"ext": ids, "exp": now.Add(-time.Hour).Unix()}), "", time.Time{}, ErrTokenInvalid},
		{"wrong secret", secret, sign(jwt.SigningMethodHS256, []byte("other"), jwt.MapClaims{"ext": ids}), "", time.Time{}, ErrTokenInvalid},
		{"alg none", secret, sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"ext": ids}), "", time.Time{}, ErrTokenInvalid},
		{"not yet valid", secret, sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"ext": ids, "nbf": now.Add(time.Hour).Unix()}), "", time.Time{}, ErrTokenInvalid},
		{"no ext", secret, sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "42"}), "", time.Time{}, ErrTokenInvalid},
		{"ext an object", secret, sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"ext": map[string]any{"user_id": 42}}), "", time.Time{}, ErrTokenInvalid},
		{"ext not JSON", secret, sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"ext": "user 42"}), "", time.Time{}, ErrTokenInvalid},
		{"garbage", secret, "not.a.token", "", time.Time{}, ErrTokenInvalid},
		{"too long", secret, strings.Repeat("a", MaxTokenLen+1), "", time.Time{}, ErrTokenInvalid},
		{"no secret", nil, sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"ext": ids}), "", time.Time{}, ErrNoSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, expires, err := VerifyJID(tt.secret, tt.token, now)
			if got != tt.ids || !expires.Equal(tt.expires) || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Errorf("got %q, %v, %v; want %q, %v, %v", got, expires, err, tt.ids, tt.expires, tt.err)
			}
		})
	}
}

// A token with the payload AnyCable's documentation shows,
// {ext: identifiers.to_json, exp: ...}, signed without golang-jwt (Python's
// hmac over base64url(header) "." base64url(payload)) with the secret
// "secret"; exp is 4102444800 (2100-01-01).
func TestVerifyJIDDocumentedToken(t *testing.T) {
	const token = "eyJhbGciOiJIUzI1NiJ9.eyJleHQiOiJ7XCJ1c2VyX2lkXCI6NDJ9IiwiZXhwIjo0MTAyNDQ0ODAwfQ.OD66ZqHyTDI0SzHuw6CO4IqbwVbgAYEA7XRsXcJJAlI"
	ids, exp, err := VerifyJID([]byte("secret"), token, time.Unix(1_800_000_000, 0))
	if err != nil || ids != `{"user_id":42}` || exp.Unix() != 4102444800 {
		t.Fatalf("got %q, %v, %v", ids, exp, err)
	}
}
