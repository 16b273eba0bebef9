package auth_test

import (
	"crypto"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/auth/authtest"
)

// TestVerifyClaimChecks covers the registered claims Verify checks beyond
// exp's value: the JSON type of exp, nbf and iat, and aud and iss when the
// server is configured with an audience and an issuer.
func TestVerifyClaimChecks(t *testing.T) {
	future := time.Now().Add(time.Hour).Unix()
	past := time.Now().Add(-time.Hour).Unix()
	plain := auth.Config{Secret: authtest.Secret}
	aud := auth.Config{Secret: authtest.Secret, Audience: "huddle"}
	iss := auth.Config{Secret: authtest.Secret, Issuer: "https://auth.example.com"}
	both := auth.Config{Secret: authtest.Secret, PublicKeys: []crypto.PublicKey{&rsaKey().PublicKey},
		Audience: "huddle", Issuer: "https://auth.example.com"}
	hs := func(c map[string]any) string {
		c["sub"] = "alice"
		return authtest.SignHS256(authtest.Secret, c)
	}

	tests := []struct {
		name    string
		cfg     auth.Config
		token   string
		wantErr error // nil or auth.ErrUnauthorized
		wantExp int64
	}{
		// exp, nbf and iat are JSON numbers (RFC 7519 NumericDate).
		{name: "exp number", cfg: plain, token: hs(map[string]any{"exp": future}), wantExp: future},
		{name: "exp fractional", cfg: plain, token: hs(map[string]any{"exp": float64(future) + 0.5}), wantExp: future},
		{name: "exp digits in a string", cfg: plain, token: hs(map[string]any{"exp": strconv.FormatInt(future, 10)}), wantErr: auth.ErrUnauthorized},
		{name: "past exp digits in a string", cfg: plain, token: hs(map[string]any{"exp": strconv.FormatInt(past, 10)}), wantErr: auth.ErrUnauthorized},
		{name: "exp null", cfg: plain, token: hs(map[string]any{"exp": nil}), wantErr: auth.ErrUnauthorized},
		{name: "exp bool", cfg: plain, token: hs(map[string]any{"exp": true}), wantErr: auth.ErrUnauthorized},
		{name: "exp object", cfg: plain, token: hs(map[string]any{"exp": map[string]any{"t": future}}), wantErr: auth.ErrUnauthorized},
		{name: "nbf number", cfg: plain, token: hs(map[string]any{"nbf": past})},
		{name: "nbf digits in a string", cfg: plain, token: hs(map[string]any{"nbf": strconv.FormatInt(past, 10)}), wantErr: auth.ErrUnauthorized},
		{name: "iat number", cfg: plain, token: hs(map[string]any{"iat": past})},
		{name: "iat digits in a string", cfg: plain, token: hs(map[string]any{"iat": strconv.FormatInt(past, 10)}), wantErr: auth.ErrUnauthorized},

		// aud, when an audience is configured.
		{name: "aud not checked by default", cfg: plain, token: hs(map[string]any{"aud": "someone-else"})},
		{name: "aud string", cfg: aud, token: hs(map[string]any{"aud": "huddle"})},
		{name: "aud array", cfg: aud, token: hs(map[string]any{"aud": []string{"billing", "huddle"}})},
		{name: "aud other string", cfg: aud, token: hs(map[string]any{"aud": "billing"}), wantErr: auth.ErrUnauthorized},
		{name: "aud array without it", cfg: aud, token: hs(map[string]any{"aud": []string{"billing", "search"}}), wantErr: auth.ErrUnauthorized},
		{name: "aud differs in case", cfg: aud, token: hs(map[string]any{"aud": "Huddle"}), wantErr: auth.ErrUnauthorized},
		{name: "aud missing", cfg: aud, token: hs(map[string]any{}), wantErr: auth.ErrUnauthorized},
		{name: "aud empty", cfg: aud, token: hs(map[string]any{"aud": ""}), wantErr: auth.ErrUnauthorized},
		{name: "aud empty array", cfg: aud, token: hs(map[string]any{"aud": []string{}}), wantErr: auth.ErrUnauthorized},
		{name: "aud not a string", cfg: aud, token: hs(map[string]any{"aud": 7}), wantErr: auth.ErrUnauthorized},

		// iss, when an issuer is configured.
		{name: "iss not checked by default", cfg: plain, token: hs(map[string]any{"iss": "https://evil.example"})},
		{name: "iss equal", cfg: iss, token: hs(map[string]any{"iss": "https://auth.example.com"})},
		{name: "iss other", cfg: iss, token: hs(map[string]any{"iss": "https://evil.example"}), wantErr: auth.ErrUnauthorized},
		{name: "iss with a trailing slash", cfg: iss, token: hs(map[string]any{"iss": "https://auth.example.com/"}), wantErr: auth.ErrUnauthorized},
		{name: "iss missing", cfg: iss, token: hs(map[string]any{}), wantErr: auth.ErrUnauthorized},

		// Both at once, on every algorithm.
		{name: "aud and iss", cfg: both, token: hs(map[string]any{"aud": "huddle", "iss": "https://auth.example.com", "exp": future}), wantExp: future},
		{name: "aud right iss wrong", cfg: both, token: hs(map[string]any{"aud": "huddle", "iss": "https://evil.example"}), wantErr: auth.ErrUnauthorized},
		{name: "iss right aud wrong", cfg: both, token: hs(map[string]any{"aud": "billing", "iss": "https://auth.example.com"}), wantErr: auth.ErrUnauthorized},
		{name: "RS256 aud and iss", cfg: both, token: authtest.SignRS256(rsaKey(), map[string]any{"sub": "alice", "aud": []string{"huddle"}, "iss": "https://auth.example.com"})},
		{name: "RS256 aud wrong", cfg: both, token: authtest.SignRS256(rsaKey(), map[string]any{"sub": "alice", "aud": "billing", "iss": "https://auth.example.com"}), wantErr: auth.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuth(t, tt.cfg)
			id, err := a.Verify(tt.token)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || errors.Is(err, auth.ErrExpired) {
					t.Fatalf("Verify = %+v, %v; want %v (and not %v)", id, err, tt.wantErr, auth.ErrExpired)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.User != "alice" {
				t.Errorf("user %q, want alice", id.User)
			}
			var gotExp int64
			if !id.Expires.IsZero() {
				gotExp = id.Expires.Unix()
			}
			if gotExp != tt.wantExp {
				t.Errorf("exp %d, want %d", gotExp, tt.wantExp)
			}
		})
	}
}

// TestRefreshChecksAudience shows that a refresh token goes through the same
// checks as a connect token: a token for another audience cannot extend a
// session.
func TestRefreshChecksAudience(t *testing.T) {
	a := newAuth(t, auth.Config{Secret: authtest.Secret, Audience: "huddle"})
	old, err := a.Verify(authtest.SignHS256(authtest.Secret, map[string]any{"sub": "alice", "aud": "huddle"}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Refresh(old, authtest.SignHS256(authtest.Secret, map[string]any{"sub": "alice", "aud": "billing"}))
	if !errors.Is(err, auth.ErrUnauthorized) {
		t.Fatalf("Refresh with a token for another audience: %v, want %v", err, auth.ErrUnauthorized)
	}
}
