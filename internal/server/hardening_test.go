package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// Issue 13, item 3: an HTTP request that announces a body and never sends
// it is cut after the read timeout, on both transports' HTTP paths.
func TestHTTPBodyDeadline(t *testing.T) {
	h := start(t, func(o *harnessOpts) { o.cfg.HTTPReadTimeout = 500 * time.Millisecond })
	const n = 20
	conns := make([]net.Conn, n)
	for i := range conns {
		nc, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		req := "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testAPIKey + "\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"stream\":"
		if _, err := io.WriteString(nc, req); err != nil {
			t.Fatal(err)
		}
		conns[i] = nc
	}
	deadline := time.Now().Add(5 * time.Second)
	for i, nc := range conns {
		_ = nc.SetReadDeadline(deadline)
		// Whatever the server answers (an error status or nothing), the
		// connection must end: read to EOF.
		_, err := io.Copy(io.Discard, nc)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection %d still open 5 s after sending half a body", i)
		}
	}
}

// Issue 13, "open endpoints": /metrics needs the API key on the main
// listener (any capitalisation of the Bearer scheme), and MetricsHandler
// serves a listener of its own without it.
func TestMetricsNeedKey(t *testing.T) {
	h := start(t)
	for _, tc := range []struct {
		authz string
		want  int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Bearer " + testAPIKey, http.StatusOK},
		{"bearer " + testAPIKey, http.StatusOK},
		{"BEARER  " + testAPIKey, http.StatusOK},
	} {
		if st, _, _ := apiCall(t, h, "GET", "/metrics", tc.authz, ""); st != tc.want {
			t.Errorf("/metrics with Authorization %q: %d, want %d", tc.authz, st, tc.want)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms := &http.Server{Handler: h.srv.MetricsHandler(), ReadHeaderTimeout: time.Second}
	go func() { _ = ms.Serve(ln) }()
	t.Cleanup(func() { ms.Close() })
	resp, err := apiClient.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "# TYPE") {
		t.Fatalf("metrics listener: %d %.100s", resp.StatusCode, b)
	}
}

// Issue 13, "drain": a single node's POST /api/publish answers 503 with
// Retry-After once the drain began (its history ends with the process),
// and every API answer says the node is draining.
func TestPublishDuringDrain(t *testing.T) {
	h := start(t)
	c := dialUser(t, h, "dora")
	// A polled HTTP session holds no socket: its 4009 waits for a poll
	// that never comes, so it keeps the drain (and the listener) going for
	// its close grace, whatever the WebSocket does.
	h.openHTTPPoll()
	if code, body := h.apiPublish(`{"stream":"d:1","data":1}`); code != http.StatusOK {
		t.Fatalf("publish before the drain: %d %s", code, body)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	for !h.srv.Draining() {
		time.Sleep(time.Millisecond)
	}
	// The client's socket may still be open; the API answers regardless.
	st, hdr, b := apiCall(t, h, "POST", "/api/publish", "Bearer "+testAPIKey, `{"stream":"d:1","data":2}`)
	if st != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || hdr.Get("Huddle-Draining") != "true" || !strings.Contains(string(b), `"draining"`) {
		t.Fatalf("publish during the drain: %d %v %s", st, hdr, b)
	}
	st, hdr, _ = apiCall(t, h, "GET", "/api/stats", "Bearer "+testAPIKey, "")
	if st != http.StatusOK || hdr.Get("Huddle-Draining") != "true" {
		t.Fatalf("stats during the drain: %d %v", st, hdr)
	}
	c.Close()
	<-done
}

// Issue 13, "refresh does not revoke": after a refresh, the subscriptions
// and joins that the new token no longer grants end with unsubscribed
// 4003, and nothing more of them arrives.
func TestRefreshRevokes(t *testing.T) {
	h := start(t)
	exp := time.Now().Add(time.Hour)
	full := map[string][]string{"doc:*": {"sub", "pub", "presence"}, "lobby": {"sub", "presence"}}
	c := dialTok(t, h, tokenWith(t, "ray", exp, full))
	subscribe(t, c, 1, "doc:1", nil)
	subscribe(t, c, 2, "doc:2", nil)
	if err := c.Send(&protocol.Join{ID: 3, S: "lobby", State: protocol.MustRaw(map[string]any{})}); err != nil {
		t.Fatal(err)
	}
	nextAs[*protocol.Ack](t, c)
	// The new token keeps doc:2 only.
	if err := c.Send(&protocol.Refresh{ID: 4, Token: tokenWith(t, "ray", exp, map[string][]string{"doc:2": {"sub"}})}); err != nil {
		t.Fatal(err)
	}
	nextAs[*protocol.Refreshed](t, c)
	ended := map[string]protocol.Code{}
	for range 2 {
		u := nextAs[*protocol.Unsubscribed](t, c)
		if u.ID != 0 || u.Reason == "" {
			t.Fatalf("unsubscribed %+v", u)
		}
		ended[u.S] = u.Code
	}
	if ended["doc:1"] != protocol.CodeForbidden || ended["lobby"] != protocol.CodeForbidden {
		t.Fatalf("ended %v, want doc:1 and lobby with 4003", ended)
	}
	code, body := h.apiPublish(`[{"stream":"doc:1","data":{"seq":1}},{"stream":"doc:2","data":{"seq":1}}]`)
	if code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	if p := nextAs[*protocol.Pub](t, c); p.S != "doc:2" {
		t.Fatalf("got a pub of %s after its grant was revoked", p.S)
	}
	// The lobby no longer lists ray.
	st, _, b := apiCall(t, h, "GET", "/api/presence/lobby", "Bearer "+testAPIKey, "")
	if st != http.StatusOK || strings.Contains(string(b), `"ray"`) {
		t.Fatalf("lobby presence after the revoke: %d %s", st, b)
	}
	wantAlive(t, c)
}

// A publication whose pub message would be larger than a subscriber's
// queue takes (here: control characters, which JSON spells out six times
// as long) is refused at publish, by WebSocket and by the API; stored, it
// would end every JSON subscriber with 4008 on every resubscribe.
func TestUndeliverablePublicationRefused(t *testing.T) {
	h := start(t)
	ctl := strings.Repeat("\x01", 900_000) // 0.9 MB as msgpack, 5.4 MB as JSON
	c := dialUser(t, h, "pat")
	if err := c.Send(&protocol.Publish{ID: 1, S: "ctl:1", Data: protocol.MustRaw(ctl)}); err != nil {
		t.Fatal(err)
	}
	if e := wantError(t, c, 1, protocol.CodeTooLarge); !strings.Contains(e.Reason, "max-queue") {
		t.Fatalf("reason %q", e.Reason)
	}
	body := `{"stream":"ctl:1","data":"` + strings.Repeat(`\u0001`, 900_000) + `"}`
	if code, resp := h.apiPublish(body); code != http.StatusRequestEntityTooLarge || !strings.Contains(resp, "too_large") {
		t.Fatalf("API publish: %d %.200s", code, resp)
	}
	// The same size of ordinary text goes through.
	if err := c.Send(&protocol.Publish{ID: 2, S: "ctl:1", Data: protocol.MustRaw(strings.Repeat("x", 900_000))}); err != nil {
		t.Fatal(err)
	}
	if a := nextAs[*protocol.Ack](t, c); a.Offset != 1 {
		t.Fatalf("ack %+v", a)
	}
}

// Before connect, a message may be at most 64 KiB: an unauthenticated
// socket cannot make the server hold a megabyte frame.
func TestPreConnectMessageLimit(t *testing.T) {
	h := start(t)
	c := dialRaw(t, h.URL, wsclient.Options{})
	if err := c.SendRaw(ws.OpBinary, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	code, err := c.WaitClosed(wait)
	if err != nil || code != int(protocol.CodeTooLarge) {
		t.Fatalf("close %d (%v), want 4005", code, err)
	}
	// A client that connects first may send up to --max-message.
	ok := dialUser(t, h, "big")
	if err := ok.Send(&protocol.Publish{ID: 1, S: "p:1", Data: protocol.MustRaw(strings.Repeat("y", 200<<10))}); err != nil {
		t.Fatal(err)
	}
	nextAs[*protocol.Ack](t, ok)
}

// Issue 16, "rolling restarts": --drain-window spreads the drain's 4009s
// over the window in a random order, and the clients not told yet stay
// connected until their turn.
func TestDrainWindow(t *testing.T) {
	h := start(t, func(o *harnessOpts) { o.cfg.DrainWindow = time.Second })
	const n = 300 // 300 at MinDrainRate (200/s) would allow 1.5 s: the window's 1 s holds
	clients := make([]*wsclient.Client, n)
	for i := range clients {
		clients[i] = dialUser(t, h, "u"+jsonInt(i))
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	told := make(chan time.Duration, n)
	for _, c := range clients {
		go func() {
			d, err := wsclient.Wait[*protocol.Disconnect](c, 5*time.Second)
			if err != nil || d.Code != protocol.CodeShutdown || !d.Reconnect {
				t.Errorf("disconnect = %+v, %v", d, err)
			}
			told <- time.Since(start)
		}()
	}
	var first, last time.Duration
	early := 0
	for i := range n {
		at := <-told
		if i == 0 {
			first = at
		}
		last = at
		if at < 300*time.Millisecond {
			early++
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Evenly spread, about 30% fall in the first 300 ms; all at once, 100%.
	if last-first < 600*time.Millisecond || early > n*6/10 {
		t.Fatalf("4009s from %v to %v, %d of %d in the first 300ms: not spread over the 1s window", first, last, early, n)
	}
}
