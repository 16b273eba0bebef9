package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "huddle.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFile: keys are flags; the environment wins over the file and
// the command line over both; unknown keys, tables and bad values are
// errors that name the key.
func TestConfigFile(t *testing.T) {
	p := writeFile(t, `
addr = "127.0.0.1:9999"
api-key = "from-file"
history-size = 7
public = true
drain-window = "9s"
max-queue = "8MiB"
rule = ["a:*=sub", "b:*=pub"]
`)
	o, err := parseOptions([]string{"--config", p})
	if err != nil {
		t.Fatal(err)
	}
	if o.addr != "127.0.0.1:9999" || o.apiKey != "from-file" || o.historySize != 7 || !o.public || o.drainWindow != 9*time.Second || o.maxQueue != 8<<20 || len(o.rules) != 2 || o.rules[1] != "b:*=pub" {
		t.Fatalf("from the file: %+v", o)
	}
	for text, want := range map[string]string{
		`nope = 1`:              `unknown key "nope"`,
		"[redis]\nurl = \"x\"":  "tables are not keys",
		`history-size = "many"`: "history-size",
		`addr = ["a", "b"]`:     "takes one value",
		`max-queue = "lots"`:    "bad size",
		`this is not toml`:      "--config",
	} {
		if _, err := parseOptions([]string{"--config", writeFile(t, text)}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one with %q", text, err, want)
		}
	}
	t.Setenv("HUDDLE_API_KEY", "from-env")
	t.Setenv("HUDDLE_HISTORY_SIZE", "8")
	o, err = parseOptions([]string{"--config", p, "--history-size", "9"})
	if err != nil {
		t.Fatal(err)
	}
	if o.apiKey != "from-env" || o.historySize != 9 || o.addr != "127.0.0.1:9999" {
		t.Fatalf("env over file, command line over env: api-key %q history-size %d addr %q", o.apiKey, o.historySize, o.addr)
	}
	t.Setenv("HUDDLE_CONFIG", p)
	if o, err = parseOptions(nil); err != nil || o.addr != "127.0.0.1:9999" {
		t.Fatalf("HUDDLE_CONFIG: %v %+v", err, o)
	}
}

// TestExampleConfig: the example file in the repository is valid.
func TestExampleConfig(t *testing.T) {
	o, err := parseOptions([]string{"--config", "../../huddle.example.toml"})
	if err != nil {
		t.Fatal(err)
	}
	if o.drainWindow != 10*time.Second || len(o.rules) != 3 {
		t.Fatalf("example: %+v", o)
	}
}

// TestConfigCommand: huddle config prints the effective settings, secrets
// masked, in a form --config reads back.
func TestConfigCommand(t *testing.T) {
	var out bytes.Buffer
	if ok, err := command([]string{"config", "--secret", "0123456789abcdef0123456789abcdef-sekrit", "--api-key", "key-sekrit", "--rule", "x:*=sub"}, &out); !ok || err != nil {
		t.Fatal(ok, err)
	}
	text := out.String()
	if strings.Contains(text, "sekrit") || !strings.Contains(text, `secret = "****"`) || !strings.Contains(text, `api-key = "****"`) || !strings.Contains(text, `rule = ["x:*=sub"]`) {
		t.Fatalf("huddle config:\n%s", text)
	}
	back, err := parseOptions([]string{"--config", writeFile(t, text)})
	if err != nil {
		t.Fatalf("reading the printed settings back: %v", err)
	}
	if back.rules[0] != "x:*=sub" || back.addr != "127.0.0.1:8080" {
		t.Fatalf("read back: %+v", back)
	}
}

// TestTokenCommand: huddle token mints tokens the server accepts, with
// their grants and info; --jid mints an AnyCable jid token.
func TestTokenCommand(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	var out bytes.Buffer
	if _, err := command([]string{"token", "--secret", secret, "--user", "42", "--info", `{"name":"Ann"}`, "--stream", "doc:*=sub,pub", "--ttl", "1h"}, &out); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Verify(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "42" || time.Until(id.Expires) < 59*time.Minute || !a.Allowed(id, auth.OpPub, "doc:1") || a.Allowed(id, auth.OpPub, "other") {
		t.Fatalf("identity %+v", id)
	}
	out.Reset()
	if _, err := command([]string{"token", "--secret", secret, "--jid", `{"user_id":42}`}, &out); err != nil {
		t.Fatal(err)
	}
	ids, _, err := wire.VerifyJID([]byte(secret), strings.TrimSpace(out.String()), time.Now())
	if err != nil || ids != `{"user_id":42}` {
		t.Fatalf("jid: %q %v", ids, err)
	}
	for _, args := range [][]string{
		{"token", "--user", "x"},                                        // no secret
		{"token", "--secret", secret},                                   // no user
		{"token", "--secret", secret, "--user", "x", "--stream", "doc"}, // no ops
		{"token", "--secret", secret, "--user", "x", "--info", "[1]"},   // not an object
		{"token", "--secret", secret, "--jid", "{"},                     // not JSON
	} {
		t.Setenv("HUDDLE_SECRET", "")
		if _, err := command(args, &out); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if ok, _ := command([]string{"--version"}, &out); !ok || !strings.HasPrefix(out.String(), "huddle ") || !strings.Contains(out.String(), "go1.") {
		t.Fatalf("--version: %q", out.String())
	}
}

// TestHealthCommand: huddle health (the image's HEALTHCHECK) succeeds when
// /healthz answers 200 and fails otherwise.
func TestHealthCommand(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var out bytes.Buffer
	if _, err := command([]string{"health", "--addr", addr}, &out); err != nil || out.String() != "ok\n" {
		t.Fatalf("healthy: %v %q", err, out.String())
	}
	status = http.StatusServiceUnavailable
	if _, err := command([]string{"health", "--addr", addr}, &out); err == nil {
		t.Fatal("503: no error")
	}
	srv.Close()
	if _, err := command([]string{"health", "--addr", addr, "--timeout", "200ms"}, &out); err == nil {
		t.Fatal("down: no error")
	}
}
