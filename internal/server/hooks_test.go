package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/hooks"
	"github.com/huddle-rt/huddle/internal/httpapi"
	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// hookApp is the application behind the hooks: an HTTP server on
// 127.0.0.1 whose answers each test sets, counting the calls.
type hookApp struct {
	srv                  *httptest.Server
	connect, sub, pub    func(body []byte) (status int, answer string)
	raw                  http.HandlerFunc // when set, answers every call instead
	connects, subs, pubs atomic.Int64

	mu   sync.Mutex // guards last
	last map[string][]byte
}

func newHookApp(t *testing.T) *hookApp {
	t.Helper()
	a := &hookApp{last: map[string][]byte{}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.raw != nil {
			a.raw(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.last[r.URL.Path] = body
		a.mu.Unlock()
		var h func([]byte) (int, string)
		switch r.URL.Path {
		case "/connect":
			a.connects.Add(1)
			h = a.connect
		case "/subscribe":
			a.subs.Add(1)
			h = a.sub
		case "/publish":
			a.pubs.Add(1)
			h = a.pub
		}
		status, answer := 200, `{"allow":true}`
		if h != nil {
			status, answer = h(body)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *hookApp) lastBody(path string) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last[path]
}

// withHooks points the server's hooks at app: those named ("connect",
// "subscribe", "publish").
func withHooks(a *hookApp, names ...string) func(*harnessOpts) {
	return func(o *harnessOpts) {
		cfg := &o.cfg.Hooks
		for _, n := range names {
			switch n {
			case "connect":
				cfg.ConnectURL = a.srv.URL + "/connect"
				o.auth.ConnectHook = true
			case "subscribe":
				cfg.SubscribeURL = a.srv.URL + "/subscribe"
			case "publish":
				cfg.PublishURL = a.srv.URL + "/publish"
			}
		}
	}
}

// dialRaw dials without connecting.
func (h *harness) dialRaw(opts wsclient.Options) *wsclient.Client {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := wsclient.Dial(ctx, h.URL, opts)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// expectHookDisconnect waits for the disconnect message and the close.
func expectHookDisconnect(t *testing.T, c *wsclient.Client, code protocol.Code, reason string, reconnect bool) {
	t.Helper()
	d, err := wsclient.Wait[*protocol.Disconnect](c, wait)
	if err != nil {
		t.Fatalf("no disconnect: %v", err)
	}
	if d.Code != code || d.Reconnect != reconnect || !strings.Contains(d.Reason, reason) {
		t.Errorf("disconnect = %+v, want code %d, reconnect %v, reason with %q", d, code, reconnect, reason)
	}
	if got, err := c.WaitClosed(wait); err != nil || got != int(code) {
		t.Errorf("close code = %d, %v; want %d", got, err, code)
	}
}

// expectHookError waits for an error reply to request id.
func expectHookError(t *testing.T, c *wsclient.Client, id uint64, code protocol.Code, reason string) {
	t.Helper()
	e, err := wsclient.Wait[*protocol.ErrorReply](c, wait)
	if err != nil {
		t.Fatalf("no error reply: %v", err)
	}
	if e.ID != id || e.Code != code || !strings.Contains(e.Reason, reason) {
		t.Errorf("error = %+v, want id %d, code %d, reason with %q", e, id, code, reason)
	}
	if e.Retry != code.Reconnect() {
		t.Errorf("error retry = %v for code %d", e.Retry, code)
	}
}

func TestHookConnect(t *testing.T) {
	app := newHookApp(t)
	exp := time.Now().Add(time.Hour).Unix()
	app.connect = func(body []byte) (int, string) {
		var req hooks.ConnectRequest
		_ = json.Unmarshal(body, &req)
		switch {
		case req.Token == "sess-alice" || req.Headers["cookie"] == "sid=alice":
			b, _ := json.Marshal(map[string]any{
				"allow": true, "user": "alice", "info": map[string]any{"name": "Alice"},
				"streams": map[string][]string{"doc:*": {"sub", "pub", "presence"}}, "exp": exp,
			})
			return 200, string(b)
		case req.Token == "garbage":
			return 200, `{"allow":true,"streams":{"doc:*":["write"]}}`
		case req.Token == "teapot":
			return 418, `{"allow":true}`
		}
		return 200, `{"allow":false,"reason":"session expired, sign in again"}`
	}
	h := start(t, withHooks(app, "connect"))

	t.Run("accepted", func(t *testing.T) {
		hdr := http.Header{"X-Request-Id": {"r-1"}, "Cookie": {"theme=dark"}, "X-Secret-Not-Listed": {"x"}}
		c := h.dialRaw(wsclient.Options{Header: hdr})
		cm, err := c.Connect("sess-alice", wait)
		if err != nil {
			t.Fatal(err)
		}
		if cm.User != "alice" || cm.Exp != exp {
			t.Errorf("connected = %+v, want user alice, exp %d", cm, exp)
		}
		var req hooks.ConnectRequest
		if err := json.Unmarshal(app.lastBody("/connect"), &req); err != nil {
			t.Fatal(err)
		}
		if req.Token != "sess-alice" || req.URL != "/ws" || req.Headers["x-request-id"] != "r-1" || req.Headers["cookie"] != "theme=dark" {
			t.Errorf("connect hook request = %+v", req)
		}
		if host, _, _ := net.SplitHostPort(req.Addr); host != "127.0.0.1" && req.Addr != "127.0.0.1" {
			t.Errorf("addr = %q, want the client's", req.Addr)
		}
		// The grants are the hook's: doc:* yes, others no; info shows in
		// presence.
		sub := subscribe(t, c, 2, "doc:1", nil)
		if sub.S != "doc:1" {
			t.Fatalf("subscribed = %+v", sub)
		}
		if err := c.Send(&protocol.Join{ID: 3, S: "doc:1", State: protocol.MustRaw(map[string]any{"x": 1})}); err != nil {
			t.Fatal(err)
		}
		if _, err := wsclient.Wait[*protocol.Ack](c, wait); err != nil {
			t.Fatal(err)
		}
		if err := c.Send(&protocol.WhoRequest{ID: 4, S: "doc:1"}); err != nil {
			t.Fatal(err)
		}
		who, err := wsclient.Wait[*protocol.Who](c, wait)
		if err != nil || len(who.Members) != 1 || who.Members[0].User != "alice" || !strings.Contains(rawJSON(t, who.Members[0].Info), "Alice") {
			t.Errorf("who = %+v, %v", who, err)
		}
		if err := c.Send(&protocol.Subscribe{ID: 5, S: "chat:1"}); err != nil {
			t.Fatal(err)
		}
		expectHookError(t, c, 5, protocol.CodeForbidden, "")
	})

	t.Run("cookie without token", func(t *testing.T) {
		c := h.dialRaw(wsclient.Options{Header: http.Header{"Cookie": {"sid=alice"}}})
		if cm, err := c.Connect("", wait); err != nil || cm.User != "alice" {
			t.Fatalf("connect = %+v, %v", cm, err)
		}
	})

	t.Run("huddle JWT skips the hook", func(t *testing.T) {
		before := app.connects.Load()
		c := h.dial("bob")
		_ = c
		if n := app.connects.Load() - before; n != 0 {
			t.Errorf("connect hook called %d times for a Huddle token", n)
		}
	})

	t.Run("expired huddle JWT is 4002, not the hook", func(t *testing.T) {
		before := app.connects.Load()
		c := h.dialRaw(wsclient.Options{})
		_ = c.Send(&protocol.Connect{ID: 1, Token: tokenWith(t, "bob", time.Now().Add(-time.Hour), allStreams)})
		expectHookDisconnect(t, c, protocol.CodeTokenExpired, "expired", true)
		if n := app.connects.Load() - before; n != 0 {
			t.Errorf("connect hook called %d times", n)
		}
	})

	t.Run("refused", func(t *testing.T) {
		c := h.dialRaw(wsclient.Options{})
		_ = c.Send(&protocol.Connect{ID: 1, Token: "sess-mallory"})
		expectHookDisconnect(t, c, protocol.CodeUnauthorized, "session expired, sign in again", false)
		if code, reason := c.CloseCode(); code != 4001 || reason != "session expired, sign in again" {
			t.Errorf("close frame = %d %q", code, reason)
		}
	})

	t.Run("invalid answer", func(t *testing.T) {
		c := h.dialRaw(wsclient.Options{})
		_ = c.Send(&protocol.Connect{ID: 1, Token: "garbage"})
		expectHookDisconnect(t, c, protocol.CodeInternal, "", true)
	})

	t.Run("HTTP error", func(t *testing.T) {
		c := h.dialRaw(wsclient.Options{})
		_ = c.Send(&protocol.Connect{ID: 1, Token: "teapot"})
		expectHookDisconnect(t, c, protocol.CodeInternal, "unavailable", true)
	})

	t.Run("messages sent before connected wait for it", func(t *testing.T) {
		c := h.dialRaw(wsclient.Options{})
		if err := c.Send(&protocol.Connect{ID: 1, Token: "sess-alice"}, &protocol.Subscribe{ID: 2, S: "doc:pipelined"}); err != nil {
			t.Fatal(err)
		}
		if _, err := wsclient.Wait[*protocol.Connected](c, wait); err != nil {
			t.Fatal(err)
		}
		if sub, err := wsclient.Wait[*protocol.Subscribed](c, wait); err != nil || sub.ID != 2 {
			t.Fatalf("subscribed = %+v, %v", sub, err)
		}
	})
}

func TestHookConnectDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := start(t, func(o *harnessOpts) {
		o.cfg.Hooks.ConnectURL = "http://" + addr + "/connect"
		o.auth.ConnectHook = true
	})
	c := h.dialRaw(wsclient.Options{})
	_ = c.Send(&protocol.Connect{ID: 1, Token: "sess-alice"})
	expectHookDisconnect(t, c, protocol.CodeInternal, "unavailable", true)
}

func TestHookConnectExpires(t *testing.T) {
	app := newHookApp(t)
	app.connect = func([]byte) (int, string) {
		b, _ := json.Marshal(map[string]any{"allow": true, "user": "alice", "exp": time.Now().Add(time.Second).Unix()})
		return 200, string(b)
	}
	h := start(t, withHooks(app, "connect"))
	c := h.dialRaw(wsclient.Options{})
	if _, err := c.Connect("sess", wait); err != nil {
		t.Fatal(err)
	}
	expectHookDisconnect(t, c, protocol.CodeTokenExpired, "expired", true)
}

// rawJSON renders a msgpack payload as JSON.
func rawJSON(t *testing.T, r protocol.Raw) string {
	t.Helper()
	if len(r) == 0 {
		return ""
	}
	b, err := protocol.MsgpackToJSON(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHookSubscribe(t *testing.T) {
	app := newHookApp(t)
	app.sub = func(body []byte) (int, string) {
		var req hooks.SubscribeRequest
		_ = json.Unmarshal(body, &req)
		switch req.Stream {
		case "doc:1":
			return 200, `{"allow":true}`
		case "doc:team":
			return 200, `{"allow":true,"presence":true,"info":{"role":"editor"}}`
		case "doc:down":
			return 500, `oops`
		case "doc:garbage":
			return 200, `not json`
		}
		return 200, `{"allow":false,"reason":"not a member of ` + req.Stream + `"}`
	}
	h := start(t, withHooks(app, "subscribe"), func(o *harnessOpts) {
		o.rules = []string{"public:=sub,presence;subscribe-hook=off", "secret:=;deny=sub"}
	})
	// A token without stream grants: the hook is the authorization.
	c := h.dialToken(tokenWith(t, "alice", time.Now().Add(time.Hour), nil))

	if sub := subscribe(t, c, 1, "doc:1", nil); sub.ID != 1 {
		t.Fatalf("subscribed = %+v", sub)
	}
	var req hooks.SubscribeRequest
	_ = json.Unmarshal(app.lastBody("/subscribe"), &req)
	if req.User != "alice" || req.Stream != "doc:1" || req.Client == "" {
		t.Errorf("subscribe hook request = %+v", req)
	}

	t.Run("deny", func(t *testing.T) {
		_ = c.Send(&protocol.Subscribe{ID: 2, S: "doc:2"})
		expectHookError(t, c, 2, protocol.CodeForbidden, "not a member of doc:2")
	})
	t.Run("unavailable", func(t *testing.T) {
		_ = c.Send(&protocol.Subscribe{ID: 3, S: "doc:down"})
		expectHookError(t, c, 3, protocol.CodeInternal, "unavailable")
		_ = c.Send(&protocol.Subscribe{ID: 4, S: "doc:garbage"})
		expectHookError(t, c, 4, protocol.CodeInternal, "unavailable")
	})
	t.Run("presence info", func(t *testing.T) {
		_ = c.Send(&protocol.Subscribe{ID: 5, S: "doc:team", Presence: true, Join: protocol.MustRaw(map[string]any{"cursor": 1})})
		sub, err := wsclient.Wait[*protocol.Subscribed](c, wait)
		if err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal(app.lastBody("/subscribe"), &req)
		if !req.Presence || !req.Join {
			t.Errorf("subscribe hook request = %+v, want presence and join", req)
		}
		// The join follows subscribed; a second watcher sees the member.
		w := h.dial("watcher")
		deadline := time.Now().Add(wait)
		for {
			_ = w.Send(&protocol.WhoRequest{ID: 9, S: "doc:team"})
			who, err := wsclient.Wait[*protocol.Who](w, wait)
			if err != nil {
				t.Fatal(err)
			}
			if len(who.Members) == 1 {
				if m := who.Members[0]; m.User != "alice" || rawJSON(t, m.Info) != `{"role":"editor"}` {
					t.Errorf("member = %+v info %s, want alice with the hook's info", m, rawJSON(t, m.Info))
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("who = %+v after subscribed %+v", who, sub)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("allow without presence does not grant join", func(t *testing.T) {
		_ = c.Send(&protocol.Subscribe{ID: 6, S: "doc:1-join", Join: protocol.MustRaw(map[string]any{})})
		// doc:1-join is refused by the app (not doc:1): 4003 either way;
		// ask for a join on doc:1, where the hook allowed sub only.
		expectHookError(t, c, 6, protocol.CodeForbidden, "")
		_ = c.Send(&protocol.Join{ID: 7, S: "doc:1"})
		expectHookError(t, c, 7, protocol.CodeForbidden, "presence")
	})
	t.Run("routing", func(t *testing.T) {
		before := app.subs.Load()
		if sub := subscribe(t, c, 8, "public:news", nil); sub.ID != 8 {
			t.Fatalf("subscribed = %+v", sub)
		}
		_ = c.Send(&protocol.Subscribe{ID: 10, S: "secret:1"})
		expectHookError(t, c, 10, protocol.CodeForbidden, "not allowed")
		if n := app.subs.Load() - before; n != 0 {
			t.Errorf("subscribe hook called %d times for streams it is not routed or a rule denies", n)
		}
	})
	t.Run("unsub ends the grant", func(t *testing.T) {
		before := app.subs.Load()
		_ = c.Send(&protocol.Unsubscribe{ID: 11, S: "doc:1"})
		if _, err := wsclient.Wait[*protocol.Unsubscribed](c, wait); err != nil {
			t.Fatal(err)
		}
		subscribe(t, c, 12, "doc:1", nil)
		if n := app.subs.Load() - before; n != 1 {
			t.Errorf("subscribe hook called %d times for a resubscribe, want 1", n)
		}
	})
}

func TestHookPublish(t *testing.T) {
	app := newHookApp(t)
	app.pub = func(body []byte) (int, string) {
		var req hooks.PublishRequest
		_ = json.Unmarshal(body, &req)
		var d map[string]any
		_ = json.Unmarshal(req.Data, &d)
		switch d["text"] {
		case "spam":
			return 200, `{"allow":false,"reason":"looks like spam"}`
		case "darn":
			return 200, `{"allow":true,"data":{"text":"****","by":"` + req.User + `"}}`
		case "boom":
			return 503, ``
		}
		return 200, `{"allow":true}`
	}
	h := start(t, withHooks(app, "publish"), func(o *harnessOpts) {
		o.rules = []string{"free:=;publish-hook=off"}
	})
	pub := h.dial("alice")
	sub := h.dial("bob")
	subscribe(t, sub, 1, "doc:1", nil)
	subscribe(t, pub, 1, "doc:1", nil)

	send := func(id uint64, stream, text string) {
		t.Helper()
		if err := pub.Send(&protocol.Publish{ID: id, S: stream, Data: protocol.MustRaw(map[string]any{"text": text})}); err != nil {
			t.Fatal(err)
		}
	}
	send(2, "doc:1", "hello")
	if ack, err := wsclient.Wait[*protocol.Ack](pub, wait); err != nil || ack.ID != 2 || ack.Offset != 1 {
		t.Fatalf("ack = %+v, %v", ack, err)
	}
	var req hooks.PublishRequest
	_ = json.Unmarshal(app.lastBody("/publish"), &req)
	if req.User != "alice" || req.Stream != "doc:1" || string(req.Data) != `{"text":"hello"}` {
		t.Errorf("publish hook request = %+v data %s", req, req.Data)
	}

	send(3, "doc:1", "spam")
	expectHookError(t, pub, 3, protocol.CodeForbidden, "looks like spam")
	send(4, "doc:1", "boom")
	expectHookError(t, pub, 4, protocol.CodeInternal, "unavailable")

	send(5, "doc:1", "darn")
	if ack, err := wsclient.Wait[*protocol.Ack](pub, wait); err != nil || ack.ID != 5 || ack.Offset != 2 {
		t.Fatalf("ack = %+v, %v", ack, err)
	}
	for _, want := range []string{`{"text":"hello"}`, `{"text":"****","by":"alice"}`} {
		p, err := wsclient.Wait[*protocol.Pub](sub, wait)
		if err != nil {
			t.Fatal(err)
		}
		if got := rawJSON(t, p.Data); !sameJSON(got, want) {
			t.Errorf("delivered %s, want %s", got, want)
		}
	}
	_ = sub.Send(&protocol.HistoryRequest{ID: 6, S: "doc:1"})
	hist, err := wsclient.Wait[*protocol.History](sub, wait)
	if err != nil || len(hist.Pubs) != 2 {
		t.Fatalf("history = %+v, %v", hist, err)
	}
	if got := rawJSON(t, hist.Pubs[1].Data); !sameJSON(got, `{"text":"****","by":"alice"}`) {
		t.Errorf("stored %s, want the hook's data", got)
	}

	before := app.pubs.Load()
	send(7, "free:1", "spam")
	if ack, err := wsclient.Wait[*protocol.Ack](pub, wait); err != nil || ack.ID != 7 {
		t.Fatalf("ack = %+v, %v", ack, err)
	}
	if n := app.pubs.Load() - before; n != 0 {
		t.Errorf("publish hook called %d times for a stream routed off", n)
	}
	_, _, metrics := apiCall(t, h, "GET", "/metrics", "Bearer "+testAPIKey, "")
	for _, want := range []string{
		`huddle_hook_calls_total{hook="publish",outcome="allowed"} 2`,
		`huddle_hook_calls_total{hook="publish",outcome="denied"} 1`,
		`huddle_hook_calls_total{hook="publish",outcome="unavailable"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestHookPublishOrder(t *testing.T) {
	app := newHookApp(t)
	var calls atomic.Int64
	app.pub = func([]byte) (int, string) {
		// Uneven delays: a call that overtook another would show.
		time.Sleep(time.Duration(5*(3-calls.Add(1)%3)) * time.Millisecond)
		return 200, `{"allow":true}`
	}
	h := start(t, withHooks(app, "publish"))
	pub := h.dial("alice")
	sub := h.dial("bob")
	subscribe(t, sub, 1, "doc:1", nil)
	const n = 20
	for i := range n {
		if err := pub.Send(&protocol.Publish{ID: uint64(10 + i), S: "doc:1", Data: protocol.MustRaw(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		ack, err := wsclient.Wait[*protocol.Ack](pub, wait)
		if err != nil {
			t.Fatal(err)
		}
		if ack.ID != uint64(10+i) || ack.Offset != uint64(i+1) {
			t.Fatalf("ack %d = %+v, want id %d offset %d", i, ack, 10+i, i+1)
		}
	}
	for i := range n {
		p, err := wsclient.Wait[*protocol.Pub](sub, wait)
		if err != nil {
			t.Fatal(err)
		}
		if got := rawJSON(t, p.Data); got != jsonInt(i) || p.Offset != uint64(i+1) {
			t.Fatalf("pub %d = offset %d data %s", i, p.Offset, got)
		}
	}
}

// sameJSON reports whether two JSON documents hold the same value (the
// order of object keys aside).
func sameJSON(a, b string) bool {
	var va, vb any
	return json.Unmarshal([]byte(a), &va) == nil && json.Unmarshal([]byte(b), &vb) == nil && reflect.DeepEqual(va, vb)
}

func jsonInt(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestHookSlowDoesNotStallOthers(t *testing.T) {
	app := newHookApp(t)
	release := make(chan struct{})
	app.pub = func(body []byte) (int, string) {
		var req hooks.PublishRequest
		_ = json.Unmarshal(body, &req)
		if strings.HasPrefix(req.Stream, "slow:") {
			<-release
		}
		return 200, `{"allow":true}`
	}
	h := start(t, withHooks(app, "publish"), func(o *harnessOpts) {
		o.cfg.Hooks.PublishTimeout = 20 * time.Second
	})
	defer close(release)
	slow := h.dial("slow")
	for i := range 5 {
		_ = slow.Send(&protocol.Publish{ID: uint64(i + 1), S: "slow:1", Data: protocol.MustRaw(i)})
	}
	fast := h.dial("fast")
	subscribe(t, fast, 1, "fast:1", nil)
	start := time.Now()
	for i := range 20 {
		_ = fast.Send(&protocol.Publish{ID: uint64(100 + i), S: "fast:1", Data: protocol.MustRaw(i)})
		if ack, err := wsclient.Wait[*protocol.Ack](fast, wait); err != nil || ack.ID != uint64(100+i) {
			t.Fatalf("fast ack = %+v, %v", ack, err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("another connection's 20 publishes took %v behind a stuck hook", d)
	}
	// The slow connection's own traffic on other streams goes on, too.
	subscribe(t, slow, 50, "fast:2", nil)
	if err := slow.Send(&protocol.Ping{}); err != nil {
		t.Fatal(err)
	}
	if _, err := wsclient.Wait[*protocol.Pong](slow, wait); err != nil {
		t.Fatal(err)
	}
}

func TestHookQueueLimit(t *testing.T) {
	app := newHookApp(t)
	release := make(chan struct{})
	called := make(chan struct{}, 100)
	app.pub = func([]byte) (int, string) {
		called <- struct{}{}
		<-release
		return 200, `{"allow":true}`
	}
	h := start(t, withHooks(app, "publish"), func(o *harnessOpts) {
		o.cfg.Hooks.PublishTimeout = 20 * time.Second
	})
	c := h.dial("alice")
	const n = 80
	// The first publish reaches the hook before the rest are sent, so
	// exactly one is in flight when the queue fills.
	_ = c.Send(&protocol.Publish{ID: 1, S: "doc:1", Data: protocol.MustRaw(0)})
	select {
	case <-called:
	case <-time.After(wait):
		t.Fatal("the publish hook was not called")
	}
	for i := 1; i < n; i++ {
		_ = c.Send(&protocol.Publish{ID: uint64(i + 1), S: "doc:1", Data: protocol.MustRaw(i)})
	}
	// One in flight and 64 waiting: the rest are refused at once.
	for i := 1 + 64 + 1; i <= n; i++ {
		expectHookError(t, c, uint64(i), protocol.CodeRateLimited, "waiting")
	}
	close(release)
	for i := 1; i <= 65; i++ {
		ack, err := wsclient.Wait[*protocol.Ack](c, wait)
		if err != nil || ack.ID != uint64(i) {
			t.Fatalf("ack = %+v, %v; want id %d", ack, err, i)
		}
	}
}

func (h *harness) stats() httpapi.Stats {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.HTTP+"/api/stats", nil)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := apiClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var s httpapi.Stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		h.t.Fatal(err)
	}
	return s
}

func TestHookClosedInFlight(t *testing.T) {
	app := newHookApp(t)
	entered := make(chan struct{}, 4)
	var cancelled atomic.Int64
	app.raw = func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // net/http notices a gone client only after the body
		entered <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled.Add(1)
		case <-time.After(10 * time.Second):
			_, _ = io.WriteString(w, `{"allow":true,"user":"late"}`)
		}
	}
	h := start(t, withHooks(app, "connect", "subscribe"), func(o *harnessOpts) {
		o.cfg.Hooks.SubscribeTimeout = 20 * time.Second
		o.cfg.Hooks.ConnectTimeout = 20 * time.Second
	})

	// A subscribe in flight when its connection closes.
	c := h.dial("alice")
	_ = c.Send(&protocol.Subscribe{ID: 1, S: "doc:1"})
	<-entered
	c.Close()
	// A connect in flight when its connection closes.
	c2 := h.dialRaw(wsclient.Options{})
	_ = c2.Send(&protocol.Connect{ID: 1, Token: "opaque"})
	<-entered
	c2.Close()

	deadline := time.Now().Add(wait)
	for cancelled.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 hook calls cancelled after their connections closed", cancelled.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		s := h.stats()
		if s.Subscriptions == 0 && s.Connections == 0 && s.Clients == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats = %+v after the connections closed", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHookUnsubWaitsForSub(t *testing.T) {
	app := newHookApp(t)
	app.sub = func([]byte) (int, string) {
		time.Sleep(100 * time.Millisecond)
		return 200, `{"allow":true}`
	}
	h := start(t, withHooks(app, "subscribe"))
	c := h.dial("alice")
	if err := c.Send(&protocol.Subscribe{ID: 1, S: "doc:1"}, &protocol.Unsubscribe{ID: 2, S: "doc:1"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 2 {
		m, err := c.Next(wait)
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *protocol.Subscribed:
			got = append(got, "subscribed")
		case *protocol.Unsubscribed:
			got = append(got, "unsubscribed")
		case *protocol.ErrorReply:
			t.Fatalf("error %+v", m)
		}
	}
	if got[0] != "subscribed" || got[1] != "unsubscribed" {
		t.Errorf("replies %v, want subscribed then unsubscribed", got)
	}
	deadline := time.Now().Add(wait)
	for h.stats().Subscriptions != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats = %+v: the unsub did not end the subscription", h.stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
