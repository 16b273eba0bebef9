package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/wsclient"
)

// rawUpgrade sends a WebSocket upgrade request for /ws to h over loopback,
// with the given Host and extra header lines (each ending in \r\n), and
// returns the response status and body.
func rawUpgrade(t *testing.T, h *harness, host, extra string) (int, string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", h.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(wait))
	req := "GET /ws HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		extra + "\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatalf("reading the upgrade response: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, "" // the body is the WebSocket now
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the refusal's body: %v", err)
	}
	return resp.StatusCode, string(body)
}

// TestUpgradeOrigin upgrades over loopback with Origin headers of every kind
// against the default (empty) AllowedOrigins, an explicit list, and "*", on
// both transports (epoll and goroutine per connection).
func TestUpgradeOrigin(t *testing.T) {
	const (
		ok        = http.StatusSwitchingProtocols
		forbidden = http.StatusForbidden
	)
	type upgrade struct {
		name   string
		host   string // "" means the server's real address
		origin []string
		want   int
	}
	tests := []struct {
		name    string
		allowed []string
		cases   []upgrade
	}{
		{name: "default", cases: []upgrade{
			{name: "no origin", want: ok},
			{name: "own origin", origin: []string{"http://{addr}"}, want: ok},
			{name: "own origin upper case", origin: []string{"HTTP://{ADDR}"}, want: ok},
			{name: "foreign origin", origin: []string{"https://evil.example"}, want: forbidden},
			{name: "loopback other port", origin: []string{"http://127.0.0.1:1"}, want: ok},
			{name: "loopback dev server", origin: []string{"http://localhost:5173"}, want: ok},
			{name: "loopback ipv6", origin: []string{"http://[::1]:3000"}, want: ok},
			{name: "null origin", origin: []string{"null"}, want: forbidden},
			{name: "empty origin", origin: []string{""}, want: forbidden},
			{name: "two origins", origin: []string{"http://{addr}", "https://evil.example"}, want: forbidden},
			{name: "behind a proxy", host: "rt.example.com", origin: []string{"https://rt.example.com"}, want: ok},
			{name: "behind a proxy explicit default port", host: "rt.example.com:443", origin: []string{"https://rt.example.com"}, want: ok},
			{name: "behind a proxy foreign", host: "rt.example.com", origin: []string{"https://evil.example.com"}, want: forbidden},
			{name: "behind a proxy other port", host: "rt.example.com", origin: []string{"https://rt.example.com:8443"}, want: forbidden},
			{name: "lookalike host", host: "rt.example.com", origin: []string{"https://rt.example.com.evil.example"}, want: forbidden},
		}},
		{name: "list", allowed: []string{"https://app.example.com", "https://*.example.org"}, cases: []upgrade{
			{name: "no origin", host: "rt.example.com", want: ok},
			{name: "listed", host: "rt.example.com", origin: []string{"https://app.example.com"}, want: ok},
			{name: "listed upper case", host: "rt.example.com", origin: []string{"https://APP.example.com"}, want: ok},
			{name: "wildcard subdomain", host: "rt.example.com", origin: []string{"https://a.b.example.org"}, want: ok},
			{name: "wildcard apex", host: "rt.example.com", origin: []string{"https://example.org"}, want: forbidden},
			{name: "other scheme", host: "rt.example.com", origin: []string{"http://app.example.com"}, want: forbidden},
			{name: "other port", host: "rt.example.com", origin: []string{"https://app.example.com:8443"}, want: forbidden},
			{name: "own origin", host: "rt.example.com", origin: []string{"https://rt.example.com"}, want: ok},
			{name: "loopback not listed", host: "rt.example.com", origin: []string{"http://localhost:5173"}, want: forbidden},
			{name: "foreign", host: "rt.example.com", origin: []string{"https://evil.example"}, want: forbidden},
		}},
		{name: "any", allowed: []string{"*"}, cases: []upgrade{
			{name: "foreign", origin: []string{"https://evil.example"}, want: ok},
			{name: "null", origin: []string{"null"}, want: ok},
		}},
	}
	for _, portable := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("portable=%v/%s", portable, tt.name), func(t *testing.T) {
				h := start(t, func(o *harnessOpts) {
					o.cfg.AllowedOrigins = tt.allowed
					o.cfg.ForcePortable = o.cfg.ForcePortable || portable
				})
				for _, u := range tt.cases {
					t.Run(u.name, func(t *testing.T) {
						host := u.host
						if host == "" {
							host = h.addr
						}
						var extra strings.Builder
						for _, o := range u.origin {
							o = strings.ReplaceAll(o, "{addr}", h.addr)
							o = strings.ReplaceAll(o, "{ADDR}", h.addr)
							extra.WriteString("Origin: " + o + "\r\n")
						}
						code, body := rawUpgrade(t, h, host, extra.String())
						if code != u.want {
							t.Fatalf("upgrade with Host %q and Origin %q: HTTP %d %q, want %d", host, u.origin, code, body, u.want)
						}
						if code == forbidden && !strings.Contains(body, "--allowed-origins") {
							t.Errorf("403 body %q does not say how to allow the origin", body)
						}
					})
				}
			})
		}
	}
}

// TestUpgradeOriginClient is the same refusal as a WebSocket client sees it:
// the dial fails with HTTP 403 and no connection is counted.
func TestUpgradeOriginClient(t *testing.T) {
	h := start(t)
	ctx, cancel := wsclient.Ctx(wait)
	defer cancel()
	c, err := wsclient.Dial(ctx, h.URL, wsclient.Options{Header: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil {
		c.Close()
		t.Fatal("upgrade from a foreign origin accepted")
	}
	if !strings.Contains(err.Error(), "403") {
		t.Fatalf("dial from a foreign origin: %v, want HTTP 403", err)
	}
	// The same client from the server's own origin gets in.
	c = h.dialToken(token(t, "alice"), func(o *wsclient.Options) {
		o.Header = http.Header{"Origin": {"http://" + h.addr}}
	})
	subscribe(t, c, 2, "room", nil)
}

// TestUpgradeBearerScheme: the Bearer scheme of an upgrade's Authorization
// header is case-insensitive (RFC 6750, RFC 9110 section 11.1).
func TestUpgradeBearerScheme(t *testing.T) {
	h := start(t)
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		t.Run(scheme, func(t *testing.T) {
			c := dialRaw(t, h.URL, wsclient.Options{Header: http.Header{"Authorization": {scheme + " " + token(t, "dave")}}})
			cm, err := c.Connect("", wait) // the token came with the upgrade
			if err != nil {
				t.Fatalf("connect after an upgrade with %q: %v", scheme, err)
			}
			if cm.User != "dave" {
				t.Fatalf("user %q, want dave", cm.User)
			}
		})
	}
}
