package main

// End-to-end tests of the real binary: built with go build, run as a child
// process, driven over loopback with real WebSocket clients and signals.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/auth/authtest"
	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

const (
	e2eSecret = "e2e-secret-0123456789abcdef0123456789"
	e2eAPIKey = "e2e-api-key"
	e2eWait   = 10 * time.Second
)

// TestDrainOnSIGTERM: 1,000 subscribed clients all get disconnect 4009
// (reconnect) and a close frame 4009; /readyz answers 503 and new upgrades
// are refused while draining; queued messages are flushed first; the
// process exits 0 within --shutdown-timeout.
//
// One extra client subscribes to a bulk stream and does not read until the
// signal, so megabytes are queued for it: the drain must wait for that
// queue, which makes the draining window long enough to observe /readyz.
func TestDrainOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary with 1,000 clients")
	}
	const (
		clients         = 1000
		rooms           = 50
		bulkPubs        = 8000 // ~8 MiB: more than loopback socket buffers hold
		shutdownTimeout = 10 * time.Second
	)
	bin := e2eBuild(t)
	addr := e2eFreeAddr(t)
	p := e2eStart(t, bin, nil, "--addr", addr, "--secret", e2eSecret, "--api-key", e2eAPIKey,
		"--shutdown-timeout", shutdownTimeout.String(), "--max-queue", "64MiB")
	p.waitReady(t)
	url := "ws://" + addr + "/ws"

	// 1,000 clients, connected and subscribed, 16 dialling at a time.
	cs := make([]*wsclient.Client, clients)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, err := e2eDialSubscribed(url, fmt.Sprintf("user-%d", i), fmt.Sprintf("room:%d", i%rooms))
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					continue
				}
				cs[i] = c
			}
		}()
	}
	for i := 0; i < clients; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
	})
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}

	// The bulk client: subscribed, then not read while megabytes queue up.
	bulk, br := e2eRawSubscribed(t, url, "bulk-reader", "bulk")
	pad := strings.Repeat("b", 1000)
	for first := 0; first < bulkPubs; first += 1000 {
		var b strings.Builder
		b.WriteByte('[')
		for i := first; i < first+1000; i++ {
			if i > first {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"stream":"bulk","data":{"i":%d,"p":%q}}`, i, pad)
		}
		b.WriteByte(']')
		if code, body := e2eAPI(t, addr, "POST", "/api/publish", b.String()); code != http.StatusOK {
			t.Fatalf("publish: %d %s", code, body)
		}
	}
	if code, body := e2eAPI(t, addr, "GET", "/api/stats", ""); code != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`"connections":%d`, clients+1)) {
		t.Fatalf("stats before the signal: %d %s, want %d connections", code, body, clients+1)
	}

	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// /readyz turns 503 (the bulk client's queue keeps the drain going).
	saw503 := false
	for time.Since(start) < e2eWait && !saw503 {
		code, err := e2eStatus("http://" + addr + "/readyz")
		if err != nil {
			t.Fatalf("/readyz unreachable %v after SIGTERM, before it answered 503: %v", time.Since(start), err)
		}
		saw503 = code == http.StatusServiceUnavailable
		if !saw503 && code != http.StatusOK {
			t.Fatalf("/readyz answered %d while draining, want 503", code)
		}
	}
	if !saw503 {
		t.Fatalf("/readyz never answered 503 within %v of SIGTERM", e2eWait)
	}
	t.Logf("/readyz answered 503 %v after SIGTERM", time.Since(start))
	// New WebSocket upgrades are refused with 503 while draining.
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	late, err := wsclient.Dial(ctx, url, wsclient.Options{Buffer: 1})
	cancel()
	var se ws.StatusError
	if err == nil {
		late.Close()
		t.Error("a WebSocket upgrade was accepted while draining")
	} else if !errors.As(err, &se) || int(se) != http.StatusServiceUnavailable {
		t.Errorf("upgrade while draining: %v, want HTTP 503", err)
	}

	// The bulk client now reads: every queued publication, in order, then
	// disconnect 4009 and a close frame 4009.
	got, disc, closeCode := e2eDrainRaw(t, bulk, br)
	if got != bulkPubs {
		t.Errorf("bulk client got %d of %d queued publications before the close", got, bulkPubs)
	}
	if disc == nil || disc.Code != protocol.CodeShutdown || !disc.Reconnect {
		t.Errorf("bulk client: disconnect %+v, want 4009 reconnect=true", disc)
	}
	if closeCode != int(protocol.CodeShutdown) {
		t.Errorf("bulk client: close frame %d, want 4009", closeCode)
	}

	// Every one of the 1,000 got disconnect 4009 reconnect=true and a close
	// frame 4009.
	bad := 0
	for i, c := range cs {
		if err := e2eExpectShutdown(c); err != nil {
			if bad++; bad <= 5 {
				t.Errorf("client %d: %v", i, err)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d clients did not get disconnect 4009 + close 4009", bad, clients)
	}

	code := p.wait(t, shutdownTimeout+5*time.Second)
	took := time.Since(start)
	t.Logf("drain of %d clients (+1 with ~8 MiB queued) took %v", clients, took)
	if code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0\n%s", code, p.out.String())
	}
	if took >= shutdownTimeout {
		t.Fatalf("drain took %v, not within --shutdown-timeout %v\n%s", took, shutdownTimeout, p.out.String())
	}
	// The drain's phases are in the log.
	for _, phase := range []string{"draining", "drain: /readyz answers 503", "drain: every client was told", "drained"} {
		if !strings.Contains(p.out.String(), phase) {
			t.Errorf("the log has no %q:\n%s", phase, p.out.String())
		}
	}
}

// TestStartup covers the configuration the binary refuses or accepts.
func TestStartup(t *testing.T) {
	bin := e2eBuild(t)

	t.Run("no way to authenticate", func(t *testing.T) {
		code, out := e2eRunToExit(t, bin, nil, "--addr", "127.0.0.1:0")
		if code == 0 {
			t.Fatalf("started without --secret, --jwt-public-key or --allow-anonymous:\n%s", out)
		}
		for _, flag := range []string{"--secret", "--allow-anonymous"} {
			if !strings.Contains(out, flag) {
				t.Errorf("refusal does not name %s:\n%s", flag, out)
			}
		}
	})

	t.Run("dev refuses a non-loopback addr", func(t *testing.T) {
		code, out := e2eRunToExit(t, bin, nil, "--dev", "--addr", "0.0.0.0:0")
		if code == 0 {
			t.Fatalf("--dev started on 0.0.0.0:\n%s", out)
		}
		if !strings.Contains(out, "--dev") || !strings.Contains(out, "loopback") {
			t.Errorf("refusal does not explain that --dev needs a loopback --addr:\n%s", out)
		}
	})

	t.Run("dev on loopback starts", func(t *testing.T) {
		// The control for the refusal above: --dev itself is fine.
		p := e2eStart(t, bin, nil, "--dev", "--addr", e2eFreeAddr(t))
		p.waitReady(t)
		p.stop(t)
	})

	t.Run("HUDDLE_SECRET replaces --secret", func(t *testing.T) {
		const secret = "secret-from-the-environment-0123456789"
		addr := e2eFreeAddr(t)
		p := e2eStart(t, bin, []string{"HUDDLE_SECRET=" + secret}, "--addr", addr)
		p.waitReady(t)
		url := "ws://" + addr + "/ws"
		c, err := e2eDialToken(url, e2eToken(t, secret, "env-user"))
		if err != nil {
			t.Fatalf("token signed with HUDDLE_SECRET refused: %v", err)
		}
		c.Close()
		if c, err := e2eDialToken(url, e2eToken(t, "some-other-secret", "env-user")); err == nil {
			c.Close()
			t.Fatal("token signed with another secret accepted")
		}
		p.stop(t)
	})

	t.Run("short secret refused", func(t *testing.T) {
		const short = "0123456789abcdef0123456789abcde" // 31 bytes
		for _, tt := range []struct {
			name string
			env  []string
			args []string
		}{
			{"flag", nil, []string{"--secret", short}},
			{"environment", []string{"HUDDLE_SECRET=" + short}, nil},
			{"word", nil, []string{"--secret", "hunter2"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				code, out := e2eRunToExit(t, bin, tt.env, append([]string{"--addr", "127.0.0.1:0"}, tt.args...)...)
				if code == 0 {
					t.Fatalf("started with a short secret:\n%s", out)
				}
				for _, want := range []string{"--secret", "at least 32", "openssl rand -hex 32"} {
					if !strings.Contains(out, want) {
						t.Errorf("refusal does not say %q:\n%s", want, out)
					}
				}
			})
		}
	})

	t.Run("metrics listener", func(t *testing.T) {
		addr, maddr := e2eFreeAddr(t), e2eFreeAddr(t)
		p := e2eStart(t, bin, nil, "--addr", addr, "--secret", e2eSecret, "--api-key", "k", "--metrics-addr", maddr)
		p.waitReady(t)
		get := func(url, authz string) int {
			req, _ := http.NewRequest("GET", url, nil)
			if authz != "" {
				req.Header.Set("Authorization", authz)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if st := get("http://"+maddr+"/metrics", ""); st != http.StatusOK {
			t.Errorf("--metrics-addr /metrics: %d", st)
		}
		if st := get("http://"+maddr+"/api/stats", "Bearer k"); st != http.StatusNotFound {
			t.Errorf("--metrics-addr serves /api/stats: %d", st)
		}
		if st := get("http://"+addr+"/metrics", ""); st != http.StatusUnauthorized {
			t.Errorf("--addr /metrics without the key: %d", st)
		}
		if st := get("http://"+addr+"/metrics", "Bearer k"); st != http.StatusOK {
			t.Errorf("--addr /metrics with the key: %d", st)
		}
		p.stop(t)
	})

	t.Run("dev accepts a short secret", func(t *testing.T) {
		p := e2eStart(t, bin, nil, "--dev", "--secret", "dev", "--addr", e2eFreeAddr(t))
		p.waitReady(t)
		p.stop(t)
	})

	t.Run("bad allowed origin refused", func(t *testing.T) {
		code, out := e2eRunToExit(t, bin, nil, "--addr", "127.0.0.1:0", "--secret", e2eSecret,
			"--allowed-origins", "https://app.example.com, app.example.org")
		if code == 0 {
			t.Fatalf("started with an origin without a scheme:\n%s", out)
		}
		if !strings.Contains(out, "--allowed-origins") || !strings.Contains(out, "app.example.org") {
			t.Errorf("refusal does not name the flag and the entry:\n%s", out)
		}
	})

	t.Run("jwt audience and issuer", func(t *testing.T) {
		addr := e2eFreeAddr(t)
		// The issuer comes from the environment twin, the audience from
		// the command line.
		p := e2eStart(t, bin, []string{"HUDDLE_JWT_ISSUER=https://auth.example.com"},
			"--addr", addr, "--secret", e2eSecret, "--jwt-audience", "huddle")
		p.waitReady(t)
		url := "ws://" + addr + "/ws"
		claims := func(extra map[string]any) string {
			c := map[string]any{"sub": "amy", "exp": time.Now().Add(time.Hour).Unix()}
			for k, v := range extra {
				c[k] = v
			}
			return authtest.SignHS256([]byte(e2eSecret), c)
		}
		for _, tt := range []struct {
			name  string
			token string
			ok    bool
		}{
			{"both right", claims(map[string]any{"aud": "huddle", "iss": "https://auth.example.com"}), true},
			{"aud array", claims(map[string]any{"aud": []string{"other", "huddle"}, "iss": "https://auth.example.com"}), true},
			{"aud wrong", claims(map[string]any{"aud": "other", "iss": "https://auth.example.com"}), false},
			{"aud missing", claims(map[string]any{"iss": "https://auth.example.com"}), false},
			{"iss wrong", claims(map[string]any{"aud": "huddle", "iss": "https://evil.example"}), false},
			{"iss missing", claims(map[string]any{"aud": "huddle"}), false},
			{"exp a string", claims(map[string]any{"aud": "huddle", "iss": "https://auth.example.com",
				"exp": fmt.Sprint(time.Now().Add(time.Hour).Unix())}), false},
		} {
			t.Run(tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
				defer cancel()
				c, err := wsclient.Dial(ctx, url, wsclient.Options{Buffer: 8})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if err := c.Send(&protocol.Connect{ID: 1, Token: tt.token}); err != nil {
					t.Fatal(err)
				}
				m, err := c.Next(e2eWait)
				if err != nil {
					t.Fatal(err)
				}
				if _, connected := m.(*protocol.Connected); connected != tt.ok {
					t.Fatalf("connect answered %s %+v, want connected=%v", m.Type(), m, tt.ok)
				}
				if d, isDisc := m.(*protocol.Disconnect); !tt.ok && (!isDisc || d.Code != protocol.CodeUnauthorized) {
					t.Errorf("refusal %s %+v, want disconnect 4001", m.Type(), m)
				}
			})
		}
		p.stop(t)
	})

	t.Run("allowed origins", func(t *testing.T) {
		addr := e2eFreeAddr(t)
		p := e2eStart(t, bin, nil, "--addr", addr, "--secret", e2eSecret, "--allowed-origins", "https://app.example.com,https://*.example.org")
		p.waitReady(t)
		for _, tt := range []struct {
			origin string
			ok     bool
		}{
			{"", true},
			{"https://app.example.com", true},
			{"https://a.example.org", true},
			{"http://" + addr, true},
			{"https://evil.example", false},
			{"http://localhost:5173", false},
		} {
			t.Run(tt.origin, func(t *testing.T) {
				o := wsclient.Options{Buffer: 8}
				if tt.origin != "" {
					o.Header = http.Header{"Origin": {tt.origin}}
				}
				ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
				defer cancel()
				c, _, err := wsclient.DialConnected(ctx, "ws://"+addr+"/ws", e2eToken(t, e2eSecret, "olga"), o)
				var se ws.StatusError
				switch {
				case tt.ok && err != nil:
					t.Fatalf("Origin %q refused: %v", tt.origin, err)
				case tt.ok:
					c.Close()
				case err == nil:
					c.Close()
					t.Fatalf("Origin %q accepted", tt.origin)
				case !errors.As(err, &se) || int(se) != http.StatusForbidden:
					t.Fatalf("Origin %q: %v, want HTTP 403", tt.origin, err)
				}
			})
		}
		p.stop(t)
	})

	t.Run("dev pages answer loopback hosts only", func(t *testing.T) {
		addr := e2eFreeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		p := e2eStart(t, bin, nil, "--dev", "--addr", addr)
		p.waitReady(t)
		for _, tt := range []struct {
			host, path string
			want       int
		}{
			{addr, "/dev/token?user=ann", http.StatusOK},
			{"localhost:" + port, "/dev/token?user=ann", http.StatusOK},
			{"[::1]:" + port, "/", http.StatusOK},
			{"127.0.0.2", "/", http.StatusOK},
			{"evil.example:" + port, "/dev/token?user=ann", http.StatusMisdirectedRequest},
			{"evil.example", "/", http.StatusMisdirectedRequest},
			{"127.0.0.1.nip.io:" + port, "/dev/token?user=ann", http.StatusMisdirectedRequest},
			{"localhost.evil.example:" + port, "/", http.StatusMisdirectedRequest},
		} {
			t.Run(tt.host+tt.path, func(t *testing.T) {
				req, err := http.NewRequest("GET", "http://"+addr+tt.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = tt.host
				resp, err := e2eHTTP.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.want {
					t.Fatalf("GET %s with Host %s: %d %.80q, want %d", tt.path, tt.host, resp.StatusCode, body, tt.want)
				}
				if tt.want == http.StatusOK && strings.HasPrefix(tt.path, "/dev/token") && strings.Count(string(body), ".") != 2 {
					t.Errorf("/dev/token answered %.80q, not a JWT", body)
				}
			})
		}
		// The health endpoints are not dev pages and answer any Host.
		req, _ := http.NewRequest("GET", "http://"+addr+"/readyz", nil)
		req.Host = "evil.example"
		if resp, err := e2eHTTP.Do(req); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("/readyz with a foreign Host: %v %v, want 200", resp, err)
		} else {
			resp.Body.Close()
		}
		p.stop(t)
	})

	t.Run("help", func(t *testing.T) {
		code, out := e2eRunToExit(t, bin, nil, "--help")
		if code != 0 {
			t.Fatalf("--help exited %d:\n%s", code, out)
		}
		listed := map[string]string{}
		for _, m := range regexp.MustCompile(`(?m)^\s*--([a-z0-9-]+)\s+\[([A-Z0-9_]+)\]`).FindAllStringSubmatch(out, -1) {
			listed[m[1]] = m[2]
		}
		for _, flag := range []string{"addr", "secret", "jwt-public-key", "allow-anonymous", "api-key", "broker",
			"redis-url", "max-message", "max-queue", "shutdown-timeout", "dev", "jwt-audience", "jwt-issuer", "allowed-origins"} {
			env, ok := listed[flag]
			if !ok {
				t.Errorf("--help does not list --%s with its environment name", flag)
				continue
			}
			if want := "HUDDLE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_")); env != want {
				t.Errorf("--%s is listed with %s, want %s", flag, env, want)
			}
		}
		if t.Failed() {
			t.Logf("--help output:\n%s", out)
		}
	})
}

// TestNewAuthOptions covers newAuth without a process: the secret length
// rule and the audience and issuer reaching the authenticator.
func TestNewAuthOptions(t *testing.T) {
	secret32 := strings.Repeat("k", 32)
	tests := []struct {
		name    string
		o       options
		wantErr string // substring; "" means success
	}{
		{"32-byte secret", options{secret: secret32}, ""},
		{"31-byte secret", options{secret: secret32[:31]}, "at least 32"},
		{"1-byte secret", options{secret: "x"}, "openssl rand -hex 32"},
		{"short secret in dev", options{secret: "x", dev: true}, ""},
		{"no secret, anonymous", options{allowAnonymous: true}, ""},
		{"audience and issuer", options{secret: secret32, jwtAudience: "huddle", jwtIssuer: "https://auth.example.com"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := newAuth(&tt.o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("newAuth error %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("newAuth: %v", err)
			}
			if tt.o.jwtAudience == "" {
				return
			}
			good := authtest.SignHS256([]byte(tt.o.secret), map[string]any{"sub": "amy", "aud": tt.o.jwtAudience, "iss": tt.o.jwtIssuer})
			if _, err := a.Verify(good); err != nil {
				t.Errorf("token with the configured aud and iss refused: %v", err)
			}
			for _, bad := range []map[string]any{
				{"sub": "amy", "aud": "other", "iss": tt.o.jwtIssuer},
				{"sub": "amy", "aud": tt.o.jwtAudience, "iss": "other"},
				{"sub": "amy"},
			} {
				if _, err := a.Verify(authtest.SignHS256([]byte(tt.o.secret), bad)); !errors.Is(err, auth.ErrUnauthorized) {
					t.Errorf("token %v: %v, want %v", bad, err, auth.ErrUnauthorized)
				}
			}
		})
	}
}

func TestParseOrigins(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{" , ", nil, false},
		{"*", []string{"*"}, false},
		{"https://app.example.com", []string{"https://app.example.com"}, false},
		{"https://app.example.com, https://*.example.org ,http://localhost:5173", []string{"https://app.example.com", "https://*.example.org", "http://localhost:5173"}, false},
		{"app.example.com", nil, true},
		{"https://app.example.com,https://app.example.com/path", nil, true},
		{"https://app.example.com https://b.example.com", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseOrigins(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseOrigins(%q) error %v, want error=%v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "--allowed-origins") {
					t.Errorf("error %q does not name --allowed-origins", err)
				}
				return
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parseOrigins(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestDevPagesLoopbackOnly checks the DNS rebinding guard of the --dev pages
// by Host header, without a network.
func TestDevPagesLoopbackOnly(t *testing.T) {
	d := &devMode{secret: []byte(e2eSecret), addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, apiKey: "k"}
	h := d.pages()
	tests := []struct {
		host string
		want int
	}{
		{"localhost:8080", http.StatusOK},
		{"localhost", http.StatusOK},
		{"127.0.0.1:8080", http.StatusOK},
		{"127.9.9.9:8080", http.StatusOK},
		{"[::1]:8080", http.StatusOK},
		{"[::1]", http.StatusOK},
		{"evil.example:8080", http.StatusMisdirectedRequest},
		{"evil.example", http.StatusMisdirectedRequest},
		{"127.0.0.1.nip.io:8080", http.StatusMisdirectedRequest},
		{"localhost.evil.example", http.StatusMisdirectedRequest},
		{"0.0.0.0:8080", http.StatusMisdirectedRequest},
		{"", http.StatusMisdirectedRequest},
	}
	for _, tt := range tests {
		for _, path := range []string{"/dev/token?user=ann", "/"} {
			t.Run(tt.host+path, func(t *testing.T) {
				req := httptest.NewRequest("GET", "http://127.0.0.1:8080"+path, nil)
				req.Host = tt.host
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != tt.want {
					t.Fatalf("GET %s with Host %q: %d %.80q, want %d", path, tt.host, rec.Code, rec.Body.String(), tt.want)
				}
			})
		}
	}
}

// ---- helpers ----

// e2eBuild builds the binary from this package into a temporary directory.
func e2eBuild(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "huddle")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// e2eEnv is the test's environment without HUDDLE_* variables, plus extra.
func e2eEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HUDDLE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func e2eFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// lockedBuffer collects a child's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// e2eProc is a running huddle child process.
type e2eProc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	addr string
	done chan struct{} // closed when the process has exited
}

func e2eStart(t *testing.T, bin string, env []string, args ...string) *e2eProc {
	t.Helper()
	p := &e2eProc{out: &lockedBuffer{}, done: make(chan struct{})}
	for i, a := range args {
		if a == "--addr" && i+1 < len(args) {
			p.addr = args[i+1]
		}
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = e2eEnv(env)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitReady polls /readyz until it answers 200.
func (p *e2eProc) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for {
		select {
		case <-p.done:
			t.Fatalf("huddle exited %d before it was ready:\n%s", p.cmd.ProcessState.ExitCode(), p.out.String())
		default:
		}
		if code, err := e2eStatus("http://" + p.addr + "/readyz"); err == nil && code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 within %v:\n%s", e2eWait, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait returns the exit status, failing if the process runs past timeout.
func (p *e2eProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("huddle still running %v later:\n%s", timeout, p.out.String())
		return -1
	}
}

// stop sends SIGTERM and expects a clean exit.
func (p *e2eProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, e2eWait); code != 0 {
		t.Fatalf("exit status %d after SIGTERM:\n%s", code, p.out.String())
	}
}

// e2eRunToExit runs the binary, expecting it to exit by itself.
func e2eRunToExit(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	p := e2eStart(t, bin, env, args...)
	return p.wait(t, e2eWait), p.out.String()
}

var e2eHTTP = &http.Client{Timeout: e2eWait}

func e2eStatus(url string) (int, error) {
	resp, err := e2eHTTP.Get(url)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// e2eAPI calls the HTTP API with the API key.
func e2eAPI(t *testing.T, addr, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
	resp, err := e2eHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func e2eToken(t *testing.T, secret, user string) string {
	t.Helper()
	tok, err := auth.SignHS256([]byte(secret), user, time.Now().Add(time.Hour), nil,
		map[string][]string{"*": {"sub", "pub", "history"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func e2eDialToken(url, tok string) (*wsclient.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	c, _, err := wsclient.DialConnected(ctx, url, tok, wsclient.Options{Buffer: 8})
	return c, err
}

// e2eDialSubscribed connects a reading client as user and subscribes it to
// stream. It runs off the test goroutine, so it returns errors.
func e2eDialSubscribed(url, user, stream string) (*wsclient.Client, error) {
	tok, err := auth.SignHS256([]byte(e2eSecret), user, time.Now().Add(time.Hour), nil,
		map[string][]string{"*": {"sub", "pub", "history"}})
	if err != nil {
		return nil, err
	}
	c, err := e2eDialToken(url, tok)
	if err != nil {
		return nil, err
	}
	if err := c.Send(&protocol.Subscribe{ID: 2, S: stream}); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := wsclient.Wait[*protocol.Subscribed](c, e2eWait); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// e2eFrames reads a NoReader client's socket.
type e2eFrames struct {
	c  *wsclient.Client
	br io.Reader
}

func (r *e2eFrames) next(deadline time.Time) (ws.Frame, error) {
	_ = r.c.Conn.SetReadDeadline(deadline)
	return ws.ReadFrame(r.br)
}

// e2eRawSubscribed connects and subscribes a client that nothing reads
// afterwards; the test reads it later through the returned reader.
func e2eRawSubscribed(t *testing.T, url, user, stream string) (*wsclient.Client, *e2eFrames) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	c, err := wsclient.Dial(ctx, url, wsclient.Options{NoReader: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &e2eFrames{c: c, br: bufio.NewReaderSize(c.Conn, 64<<10)}
	if err := c.Send(&protocol.Connect{ID: 1, Token: e2eToken(t, e2eSecret, user)}, &protocol.Subscribe{ID: 2, S: stream}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(e2eWait)
	for {
		f, err := r.next(deadline)
		if err != nil {
			t.Fatalf("%s: waiting for subscribed: %v", user, err)
		}
		msgs, err := protocol.DecodeServer(c.Codec, f.Payload, nil)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		for _, d := range msgs {
			switch m := d.Msg.(type) {
			case *protocol.Subscribed:
				return c, r
			case *protocol.Disconnect:
				t.Fatalf("%s: disconnect %d %s", user, m.Code, m.Reason)
			case *protocol.ErrorReply:
				t.Fatalf("%s: error %d %s", user, m.Code, m.Reason)
			}
		}
	}
}

// e2eDrainRaw reads a NoReader client to the end: the number of pubs (in
// offset order, no gap), the disconnect and the close frame's code.
func e2eDrainRaw(t *testing.T, c *wsclient.Client, r *e2eFrames) (pubs int, disc *protocol.Disconnect, closeCode int) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	var last uint64
	for {
		f, err := r.next(deadline)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("socket still open %v later", e2eWait)
			}
			return pubs, disc, closeCode
		}
		switch f.Header.OpCode {
		case ws.OpClose:
			closeCode = 1005
			if len(f.Payload) >= 2 {
				closeCode = int(f.Payload[0])<<8 | int(f.Payload[1])
			}
		case ws.OpText, ws.OpBinary:
			msgs, err := protocol.DecodeServer(c.Codec, f.Payload, nil)
			if err != nil {
				t.Errorf("undecodable frame: %v", err)
				return pubs, disc, closeCode
			}
			for _, d := range msgs {
				switch m := d.Msg.(type) {
				case *protocol.Pub:
					if disc != nil || (last != 0 && m.Offset != last+1) {
						t.Errorf("pub offset %d after %d (disconnect seen: %v)", m.Offset, last, disc != nil)
					}
					last = m.Offset
					pubs++
				case *protocol.Disconnect:
					disc = m
				}
			}
		}
	}
}

// e2eExpectShutdown checks that c got disconnect 4009 with reconnect and a
// close frame 4009.
func e2eExpectShutdown(c *wsclient.Client) error {
	d, err := wsclient.Wait[*protocol.Disconnect](c, e2eWait)
	if err != nil {
		code, reason := c.CloseCode()
		return fmt.Errorf("no disconnect: %v (close frame %d %q)", err, code, reason)
	}
	if d.Code != protocol.CodeShutdown || !d.Reconnect {
		return fmt.Errorf("disconnect %d reconnect=%v %q, want 4009 reconnect=true", d.Code, d.Reconnect, d.Reason)
	}
	code, err := c.WaitClosed(e2eWait)
	if err != nil {
		return err
	}
	if code != int(protocol.CodeShutdown) {
		return fmt.Errorf("close frame %d, want 4009", code)
	}
	return nil
}
