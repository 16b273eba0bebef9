package auth_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/auth/authtest"
)

func TestNew(t *testing.T) {
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     auth.Config
		wantErr string // substring; "" means success
	}{
		{"secret", auth.Config{Secret: []byte("s")}, ""},
		{"public key", auth.Config{PublicKeys: []crypto.PublicKey{&rsaKey().PublicKey}}, ""},
		{"anonymous only", auth.Config{AllowAnonymous: true}, ""},
		{"all", auth.Config{
			Secret:         authtest.Secret,
			PublicKeys:     []crypto.PublicKey{&rsaKey().PublicKey, &ecKey().PublicKey, &otherECKey().PublicKey},
			AllowAnonymous: true,
			Leeway:         time.Second,
			Rules:          []auth.Rule{{Prefix: "chat:", Allow: auth.OpsOf(auth.OpSub)}},
		}, ""},
		{"nothing", auth.Config{}, "--secret"},
		{"negative leeway", auth.Config{Secret: []byte("s"), Leeway: -time.Second}, "leeway"},
		{"bad default history", auth.Config{Secret: []byte("s"), DefaultHistorySize: -2}, "history size"},
		{"bad default ttl", auth.Config{Secret: []byte("s"), DefaultHistoryTTL: -time.Second}, "TTL"},
		{"ed25519", auth.Config{PublicKeys: []crypto.PublicKey{edPub}}, "ed25519"},
		{"P-384", auth.Config{PublicKeys: []crypto.PublicKey{&mustEC(elliptic.P384()).PublicKey}}, "P-256"},
		{"small RSA", auth.Config{PublicKeys: []crypto.PublicKey{&mustRSA(1024).PublicKey}}, "1024 bits"},
		{"private key", auth.Config{PublicKeys: []crypto.PublicKey{rsaKey()}}, "unsupported key type"},
		{"bad rule", auth.Config{Secret: []byte("s"), Rules: []auth.Rule{{Prefix: "a\nb"}}}, "prefix"},
		{"bad rule ops", auth.Config{Secret: []byte("s"), Rules: []auth.Rule{{Allow: 1}}}, "unknown bits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := auth.New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil || a == nil {
					t.Fatalf("New = %v, %v", a, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
			if !errors.Is(err, auth.ErrConfig) && !errors.Is(err, auth.ErrBadRule) {
				t.Errorf("New error %v wraps neither ErrConfig nor ErrBadRule", err)
			}
		})
	}
}

func TestNewNamesFlags(t *testing.T) {
	_, err := auth.New(auth.Config{})
	for _, flag := range []string{"--secret", "--jwt-public-key", "--allow-anonymous"} {
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("New(Config{}) error %v does not name %s", err, flag)
		}
	}
}

// signWith signs claims with any jwt method, for algorithms authtest has no
// helper for.
func signWith(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tamper replaces the token's payload with claims, keeping its signature.
func tamper(token string, claims string) string {
	parts := strings.Split(token, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(claims))
	return strings.Join(parts, ".")
}

func TestVerify(t *testing.T) {
	now := time.Now()
	future := now.Add(time.Hour).Unix()
	past := now.Add(-time.Hour).Unix()
	hs := func(c map[string]any) string { return authtest.SignHS256(authtest.Secret, c) }

	full := auth.Config{
		Secret:     authtest.Secret,
		PublicKeys: []crypto.PublicKey{&rsaKey().PublicKey, &ecKey().PublicKey},
	}
	hsOnly := auth.Config{Secret: authtest.Secret}
	keysOnly := auth.Config{PublicKeys: []crypto.PublicKey{&rsaKey().PublicKey, &ecKey().PublicKey}}
	anon := auth.Config{Secret: authtest.Secret, AllowAnonymous: true}
	anonOnly := auth.Config{AllowAnonymous: true}
	leeway := auth.Config{Secret: authtest.Secret, Leeway: time.Minute}

	tests := []struct {
		name     string
		cfg      auth.Config
		token    string
		wantErr  error // nil, auth.ErrUnauthorized or auth.ErrExpired
		wantUser string
		wantExp  int64  // unix seconds; 0 means no expiry
		wantInfo string // raw JSON; "" means nil
	}{
		{name: "HS256", cfg: full, token: hs(map[string]any{"sub": "alice"}), wantUser: "alice"},
		{name: "HS256 with exp", cfg: full, token: hs(map[string]any{"sub": "alice", "exp": future}), wantUser: "alice", wantExp: future},
		{name: "HS256 bad signature", cfg: full, token: authtest.SignHS256([]byte("another secret"), map[string]any{"sub": "alice"}), wantErr: auth.ErrUnauthorized},
		{name: "HS256 tampered payload", cfg: full, token: tamper(hs(map[string]any{"sub": "alice"}), `{"sub":"mallory"}`), wantErr: auth.ErrUnauthorized},
		{name: "HS256 without secret", cfg: keysOnly, token: hs(map[string]any{"sub": "alice"}), wantErr: auth.ErrUnauthorized},
		{name: "HS384 not accepted", cfg: full, token: signWith(t, jwt.SigningMethodHS384, authtest.Secret, jwt.MapClaims{"sub": "alice"}), wantErr: auth.ErrUnauthorized},
		{name: "HS512 not accepted", cfg: full, token: signWith(t, jwt.SigningMethodHS512, authtest.Secret, jwt.MapClaims{"sub": "alice"}), wantErr: auth.ErrUnauthorized},
		{name: "alg none", cfg: full, token: authtest.Unsigned(map[string]any{"sub": "alice"}), wantErr: auth.ErrUnauthorized},
		{name: "alg none anonymous server", cfg: anon, token: authtest.Unsigned(map[string]any{"sub": "alice"}), wantErr: auth.ErrUnauthorized},
		{name: "unknown alg", cfg: full, token: tamperHeader(hs(map[string]any{"sub": "alice"}), `{"alg":"XX999","typ":"JWT"}`), wantErr: auth.ErrUnauthorized},
		{name: "no alg", cfg: full, token: tamperHeader(hs(map[string]any{"sub": "alice"}), `{"typ":"JWT"}`), wantErr: auth.ErrUnauthorized},
		{
			// The classic confusion attack: HMAC keyed with the server's public key.
			name: "HS256 keyed with public key", cfg: keysOnly,
			token:   authtest.SignHS256(pkixPEM(t, &rsaKey().PublicKey), map[string]any{"sub": "alice"}),
			wantErr: auth.ErrUnauthorized,
		},
		{name: "RS256", cfg: full, token: authtest.SignRS256(rsaKey(), map[string]any{"sub": "bob", "exp": future}), wantUser: "bob", wantExp: future},
		{name: "RS256 keys only", cfg: keysOnly, token: authtest.SignRS256(rsaKey(), map[string]any{"sub": "bob"}), wantUser: "bob"},
		{name: "RS256 wrong key", cfg: full, token: authtest.SignRS256(otherRSAKey(), map[string]any{"sub": "bob"}), wantErr: auth.ErrUnauthorized},
		{name: "RS256 without public key", cfg: hsOnly, token: authtest.SignRS256(rsaKey(), map[string]any{"sub": "bob"}), wantErr: auth.ErrUnauthorized},
		{name: "PS256 not accepted", cfg: full, token: signWith(t, jwt.SigningMethodPS256, rsaKey(), jwt.MapClaims{"sub": "bob"}), wantErr: auth.ErrUnauthorized},
		{name: "RS512 not accepted", cfg: full, token: signWith(t, jwt.SigningMethodRS512, rsaKey(), jwt.MapClaims{"sub": "bob"}), wantErr: auth.ErrUnauthorized},
		{name: "ES256", cfg: full, token: authtest.SignES256(ecKey(), map[string]any{"sub": "carol"}), wantUser: "carol"},
		{name: "ES256 wrong key", cfg: full, token: authtest.SignES256(otherECKey(), map[string]any{"sub": "carol"}), wantErr: auth.ErrUnauthorized},
		{name: "ES256 without public key", cfg: hsOnly, token: authtest.SignES256(ecKey(), map[string]any{"sub": "carol"}), wantErr: auth.ErrUnauthorized},
		{name: "ES384 not accepted", cfg: full, token: signWith(t, jwt.SigningMethodES384, mustEC(elliptic.P384()), jwt.MapClaims{"sub": "carol"}), wantErr: auth.ErrUnauthorized},
		{name: "expired", cfg: full, token: hs(map[string]any{"sub": "alice", "exp": past}), wantErr: auth.ErrExpired},
		{name: "expired RS256", cfg: full, token: authtest.SignRS256(rsaKey(), map[string]any{"sub": "bob", "exp": past}), wantErr: auth.ErrExpired},
		{name: "expired bad signature", cfg: full, token: authtest.SignHS256([]byte("x"), map[string]any{"sub": "alice", "exp": past}), wantErr: auth.ErrUnauthorized},
		{name: "expired within leeway", cfg: leeway, token: hs(map[string]any{"sub": "alice", "exp": now.Add(-30 * time.Second).Unix()}), wantUser: "alice", wantExp: now.Add(-30 * time.Second).Unix()},
		{name: "expired beyond leeway", cfg: leeway, token: hs(map[string]any{"sub": "alice", "exp": now.Add(-2 * time.Minute).Unix()}), wantErr: auth.ErrExpired},
		{name: "not yet valid", cfg: full, token: hs(map[string]any{"sub": "alice", "nbf": future}), wantErr: auth.ErrUnauthorized},
		{name: "exp not a number", cfg: full, token: hs(map[string]any{"sub": "alice", "exp": "tomorrow"}), wantErr: auth.ErrUnauthorized},
		{name: "missing sub", cfg: full, token: hs(map[string]any{"exp": future}), wantErr: auth.ErrUnauthorized},
		{name: "empty sub", cfg: full, token: hs(map[string]any{"sub": ""}), wantErr: auth.ErrUnauthorized},
		{name: "missing sub anonymous", cfg: anon, token: hs(map[string]any{"exp": future}), wantUser: "", wantExp: future},
		{name: "sub not a string", cfg: full, token: hs(map[string]any{"sub": 42}), wantErr: auth.ErrUnauthorized},
		{name: "malformed", cfg: full, token: "not-a-jwt", wantErr: auth.ErrUnauthorized},
		{name: "malformed segments", cfg: full, token: "a.b.c", wantErr: auth.ErrUnauthorized},
		{name: "too many segments", cfg: full, token: hs(map[string]any{"sub": "alice"}) + ".x", wantErr: auth.ErrUnauthorized},
		{name: "empty token", cfg: full, token: "", wantErr: auth.ErrUnauthorized},
		{name: "empty token anonymous", cfg: anon, token: "", wantUser: ""},
		{name: "empty token anonymous only", cfg: anonOnly, token: "", wantUser: ""},
		{name: "token on anonymous-only server", cfg: anonOnly, token: hs(map[string]any{"sub": "alice"}), wantErr: auth.ErrUnauthorized},
		{
			name: "info", cfg: full,
			token:    hs(map[string]any{"sub": "alice", "info": map[string]any{"name": "Alice", "color": "#f00"}}),
			wantUser: "alice", wantInfo: `{"color":"#f00","name":"Alice"}`,
		},
		{name: "info empty object", cfg: full, token: hs(map[string]any{"sub": "alice", "info": map[string]any{}}), wantUser: "alice", wantInfo: `{}`},
		{name: "info null", cfg: full, token: hs(map[string]any{"sub": "alice", "info": nil}), wantUser: "alice"},
		{name: "info not an object", cfg: full, token: hs(map[string]any{"sub": "alice", "info": "Alice"}), wantErr: auth.ErrUnauthorized},
		{name: "info array", cfg: full, token: hs(map[string]any{"sub": "alice", "info": []int{1}}), wantErr: auth.ErrUnauthorized},
		{
			name: "streams", cfg: full,
			token:    hs(map[string]any{"sub": "alice", "streams": map[string][]string{"doc:42": {"sub", "pub"}, "user:7:*": {"sub"}, "*": {}}}),
			wantUser: "alice",
		},
		{name: "streams unknown op", cfg: full, token: hs(map[string]any{"sub": "alice", "streams": map[string][]string{"doc:42": {"sub", "write"}}}), wantErr: auth.ErrUnauthorized},
		{name: "streams empty pattern", cfg: full, token: hs(map[string]any{"sub": "alice", "streams": map[string][]string{"": {"sub"}}}), wantErr: auth.ErrUnauthorized},
		{name: "streams control pattern", cfg: full, token: hs(map[string]any{"sub": "alice", "streams": map[string][]string{"a\nb": {"sub"}}}), wantErr: auth.ErrUnauthorized},
		{name: "streams not a map", cfg: full, token: hs(map[string]any{"sub": "alice", "streams": []string{"doc:42"}}), wantErr: auth.ErrUnauthorized},
		{name: "streams ops not a list", cfg: full, token: hs(map[string]any{"sub": "alice", "streams": map[string]any{"doc:42": "sub"}}), wantErr: auth.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuth(t, tt.cfg)
			id, err := a.Verify(tt.token)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Verify = %+v, %v; want %v", id, err, tt.wantErr)
				}
				if id != nil {
					t.Errorf("Verify returned identity %+v with error", id)
				}
				other := auth.ErrExpired
				if tt.wantErr == auth.ErrExpired {
					other = auth.ErrUnauthorized
				}
				if errors.Is(err, other) {
					t.Errorf("error %v wraps both sentinels", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.User != tt.wantUser {
				t.Errorf("User = %q, want %q", id.User, tt.wantUser)
			}
			if id.Anonymous() != (tt.wantUser == "") {
				t.Errorf("Anonymous() = %v for user %q", id.Anonymous(), id.User)
			}
			switch {
			case tt.wantExp == 0 && !id.Expires.IsZero():
				t.Errorf("Expires = %v, want zero", id.Expires)
			case tt.wantExp != 0 && !id.Expires.Equal(time.Unix(tt.wantExp, 0)):
				t.Errorf("Expires = %v, want %v", id.Expires, time.Unix(tt.wantExp, 0))
			}
			if tt.wantInfo == "" && id.Info != nil {
				t.Errorf("Info = %s, want nil", id.Info)
			}
			if tt.wantInfo != "" && string(id.Info) != tt.wantInfo {
				t.Errorf("Info = %s, want %s", id.Info, tt.wantInfo)
			}
		})
	}
}

// tamperHeader replaces the token's header, keeping payload and signature.
func tamperHeader(token, header string) string {
	parts := strings.Split(token, ".")
	parts[0] = base64.RawURLEncoding.EncodeToString([]byte(header))
	return strings.Join(parts, ".")
}

func TestVerifyErrorDetail(t *testing.T) {
	a := newAuth(t, auth.Config{Secret: authtest.Secret})
	tests := []struct {
		name  string
		token string
		want  string
	}{
		{"unknown op", authtest.SignHS256(authtest.Secret, map[string]any{"sub": "a", "streams": map[string][]string{"doc:1": {"write"}}}), `"write"`},
		{"no sub", authtest.SignHS256(authtest.Secret, map[string]any{}), "sub"},
		{"expired", authtest.SignHS256(authtest.Secret, map[string]any{"sub": "a", "exp": 1}), "1970-01-01T00:00:01Z"},
		{"alg none", authtest.Unsigned(map[string]any{"sub": "a"}), "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Verify(tt.token)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Verify error %v does not mention %s", err, tt.want)
			}
		})
	}
}

func TestVerifyKeyRotation(t *testing.T) {
	a := newAuth(t, auth.Config{PublicKeys: []crypto.PublicKey{
		&rsaKey().PublicKey, &otherRSAKey().PublicKey, &ecKey().PublicKey, &otherECKey().PublicKey,
	}})
	for name, token := range map[string]string{
		"RS256 first":  authtest.SignRS256(rsaKey(), map[string]any{"sub": "u"}),
		"RS256 second": authtest.SignRS256(otherRSAKey(), map[string]any{"sub": "u"}),
		"ES256 first":  authtest.SignES256(ecKey(), map[string]any{"sub": "u"}),
		"ES256 second": authtest.SignES256(otherECKey(), map[string]any{"sub": "u"}),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := a.Verify(token); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	a := newAuth(t, auth.Config{Secret: authtest.Secret, AllowAnonymous: true})
	exp := time.Now().Add(time.Hour).Unix()
	alice, err := a.Verify(authtest.SignHS256(authtest.Secret, map[string]any{"sub": "alice"}))
	if err != nil {
		t.Fatal(err)
	}
	anon, err := a.Verify("")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		old      *auth.Identity
		token    string
		wantErr  error
		wantText string
	}{
		{"same user", alice, authtest.SignHS256(authtest.Secret, map[string]any{"sub": "alice", "exp": exp}), nil, ""},
		{"another user", alice, authtest.SignHS256(authtest.Secret, map[string]any{"sub": "bob", "exp": exp}), auth.ErrUnauthorized, "refresh token is for another user"},
		{"to anonymous", alice, "", auth.ErrUnauthorized, "another user"},
		{"anonymous to user", anon, authtest.SignHS256(authtest.Secret, map[string]any{"sub": "alice"}), auth.ErrUnauthorized, "another user"},
		{"expired", alice, authtest.SignHS256(authtest.Secret, map[string]any{"sub": "alice", "exp": 1}), auth.ErrExpired, ""},
		{"bad signature", alice, authtest.SignHS256([]byte("x"), map[string]any{"sub": "alice"}), auth.ErrUnauthorized, ""},
		{"nil old", nil, authtest.SignHS256(authtest.Secret, map[string]any{"sub": "alice"}), auth.ErrUnauthorized, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := a.Refresh(tt.old, tt.token)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantText) {
					t.Fatalf("Refresh = %+v, %v; want %v containing %q", id, err, tt.wantErr, tt.wantText)
				}
				return
			}
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if id.User != tt.old.User || !id.Expires.Equal(time.Unix(exp, 0)) {
				t.Errorf("Refresh = %+v", id)
			}
		})
	}
}

func TestSignHS256(t *testing.T) {
	a := newAuth(t, auth.Config{Secret: authtest.Secret})
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	token, err := auth.SignHS256(authtest.Secret, "alice", exp, map[string]any{"name": "Alice"}, map[string][]string{"doc:*": {"sub", "pub"}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Verify(token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.User != "alice" || !id.Expires.Equal(exp) || string(id.Info) != `{"name":"Alice"}` {
		t.Errorf("Verify = %+v (info %s)", id, id.Info)
	}
	if !a.Allowed(id, auth.OpPub, "doc:9") || a.Allowed(id, auth.OpHistory, "doc:9") {
		t.Error("grants not carried over")
	}

	noExp, err := auth.SignHS256(authtest.Secret, "bob", time.Time{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := a.Verify(noExp); err != nil || !id.Expires.IsZero() || id.Info != nil {
		t.Errorf("Verify(no exp) = %+v, %v", id, err)
	}

	errTests := []struct {
		name    string
		secret  []byte
		streams map[string][]string
	}{
		{"empty secret", nil, nil},
		{"unknown op", authtest.Secret, map[string][]string{"doc:1": {"write"}}},
		{"bad pattern", authtest.Secret, map[string][]string{"": {"sub"}}},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			if tok, err := auth.SignHS256(tt.secret, "alice", time.Time{}, nil, tt.streams); err == nil {
				t.Errorf("SignHS256 = %q, want error", tok)
			}
		})
	}
}

// verifyBenchmarks drives BenchmarkVerify; every token is valid.
var verifyBenchmarks = []struct {
	name  string
	token func() string
}{
	{"HS256", func() string {
		return authtest.SignHS256(authtest.Secret, map[string]any{
			"sub": "user-1234", "exp": time.Now().Add(time.Hour).Unix(),
			"info":    map[string]any{"name": "Alice", "color": "#f00"},
			"streams": map[string][]string{"doc:42": {"sub", "pub", "whisper", "presence"}, "user:1234:*": {"sub"}},
		})
	}},
	{"RS256", func() string { return authtest.SignRS256(rsaKey(), map[string]any{"sub": "user-1234"}) }},
	{"ES256", func() string { return authtest.SignES256(ecKey(), map[string]any{"sub": "user-1234"}) }},
}

func BenchmarkVerify(b *testing.B) {
	a := newAuth(b, auth.Config{
		Secret:     authtest.Secret,
		PublicKeys: []crypto.PublicKey{&rsaKey().PublicKey, &ecKey().PublicKey},
	})
	for _, bb := range verifyBenchmarks {
		b.Run(bb.name, func(b *testing.B) {
			token := bb.token()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Verify(token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(authtest.SignHS256(authtest.Secret, map[string]any{"sub": "a", "streams": map[string][]string{"*": {"sub"}}}))
	f.Add(authtest.Unsigned(map[string]any{"sub": "a"}))
	f.Add("a.b.c")
	f.Add("")
	a, err := auth.New(auth.Config{Secret: authtest.Secret, AllowAnonymous: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := a.Verify(token)
		if (id == nil) == (err == nil) {
			t.Fatalf("Verify = %v, %v: want exactly one", id, err)
		}
		if err != nil && !errors.Is(err, auth.ErrUnauthorized) && !errors.Is(err, auth.ErrExpired) {
			t.Fatalf("Verify error %v wraps no sentinel", err)
		}
	})
}
