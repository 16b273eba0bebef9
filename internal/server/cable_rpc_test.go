package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/frontend/cable/cabletest"
	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// startRPC is a node whose /cable backend is the handler h.
func startRPC(t *testing.T, h http.Handler, opts ...func(*harnessOpts)) *harness {
	backend := httptest.NewServer(h)
	t.Cleanup(backend.Close)
	return start(t, append([]func(*harnessOpts){func(o *harnessOpts) {
		o.cfg.RPCURL = backend.URL + "/_anycable"
		o.auth.AllowAnonymous = true
	}}, opts...)...)
}

// TestCableRPCBackendDown: a backend that is down, or answers garbage,
// makes /cable say server_restart with reconnect, never unauthorized; the
// node stays up.
func TestCableRPCBackendDown(t *testing.T) {
	for name, h := range map[string]http.Handler{
		"failing": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }),
		"garbage": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>")) }),
		"error": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"status":0,"error_msg":"boom"}`))
		}),
	} {
		t.Run(name, func(t *testing.T) {
			h := startRPC(t, h)
			c := h.dialCable("", wire.SubprotocolExtJSON)
			if m := c.Expect("disconnect"); m["reason"] != "server_restart" || m["reconnect"] != true {
				t.Fatalf("disconnect %v, want server_restart with reconnect", m)
			}
		})
	}
}

// TestCableRPCSlowBackendStallsNoOne: while the backend holds connects,
// /ws traffic goes on.
func TestCableRPCSlowBackendStallsNoOne(t *testing.T) {
	release := make(chan struct{})
	h := startRPC(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = w.Write([]byte(`{"status":2}`))
	}))
	defer close(release)
	for range 40 { // more than the workers' share and the RPC slots (28)
		cabletest.Dial(t, "ws://"+h.addr+"/cable", wire.SubprotocolExtJSON)
	}
	ws := h.dial("u")
	subscribe(t, ws, 1, "live", nil)
	start := time.Now()
	if code, body := h.apiPublish(`{"stream":"live","data":1}`); code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	if _, err := wsclient.Wait[*protocol.Pub](ws, wait); err != nil {
		t.Fatalf("/ws while the backend stalls: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a publication took %v to reach /ws while the backend stalled", d)
	}
}

// TestCableRPCHistoryReplay: an application channel whose subscribe asks
// for history (ext) gets, for each stream the application names, what was
// published since the given time or after the given position, then one
// confirm_history for the channel.
func TestCableRPCHistoryReplay(t *testing.T) {
	h := startRPC(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_anycable/connect":
			_, _ = w.Write([]byte(`{"status":1,"identifiers":"u1"}`))
		case "/_anycable/command":
			_, _ = w.Write([]byte(`{"status":1,"streams":["room:a","room:b"],"transmissions":["{\"type\":\"confirm_subscription\",\"identifier\":\"{\\\"channel\\\":\\\"Room\\\"}\"}"]}`))
		}
	}))
	since := time.Now().Unix() - 1
	for _, body := range []string{`{"stream":"room:a","data":"a1"}`, `{"stream":"room:b","data":"b1"}`, `{"stream":"room:a","data":"a2"}`} {
		if code, resp := h.apiPublish(body); code != http.StatusOK {
			t.Fatalf("publish: %d %s", code, resp)
		}
	}
	const id = `{"channel":"Room"}`
	c := h.dialCable("", wire.SubprotocolExtJSON)
	c.Expect("welcome")
	c.Send(map[string]any{"command": "subscribe", "identifier": id, "history": map[string]any{"since": since}})
	c.Expect("confirm_subscription")
	got := map[string][]any{}
	for range 3 {
		m := c.Expect("")
		got[m["stream_id"].(string)] = append(got[m["stream_id"].(string)], m["message"])
	}
	if len(got["room:a"]) != 2 || got["room:a"][0] != "a1" || got["room:a"][1] != "a2" || len(got["room:b"]) != 1 || got["room:b"][0] != "b1" {
		t.Fatalf("replayed %v, want a1 a2 on room:a and b1 on room:b", got)
	}
	if m := c.Expect("confirm_history"); m["identifier"] != id {
		t.Fatalf("confirm_history %v, want identifier %s", m, id)
	}
	c.Quiet(300 * time.Millisecond) // one answer for the channel, not one per stream
	if code, resp := h.apiPublish(`{"stream":"room:b","data":"b2"}`); code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, resp)
	}
	if m := c.Expect(""); m["message"] != "b2" {
		t.Fatalf("live %v, want b2", m)
	}
}

// TestCableRPCReadyz: /readyz fails while the backend cannot be reached,
// saying so, and recovers once it answers again.
func TestCableRPCReadyz(t *testing.T) {
	var up atomic.Bool
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"status":2}`))
	}))
	defer backend.Close()
	h := start(t, func(o *harnessOpts) {
		o.cfg.RPCURL = backend.URL + "/_anycable"
		o.auth.AllowAnonymous = true
	})
	if code, body := readyz(t, h); code != http.StatusOK {
		t.Fatalf("readyz before any call: %d %s", code, body)
	}
	for range 3 {
		c := h.dialCable("", wire.SubprotocolExtJSON)
		if m := c.Expect("disconnect"); m["reason"] != "server_restart" || m["reconnect"] != true {
			t.Fatalf("disconnect %v, want server_restart with reconnect", m)
		}
	}
	code, body := readyz(t, h)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "application backend") {
		t.Fatalf("readyz with the backend down: %d %s", code, body)
	}
	up.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := readyz(t, h); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("readyz still failing 10s after the backend came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readyz is /readyz's status and body.
func readyz(t *testing.T, h *harness) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + h.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCableRPCConnectEnv: connect carries what anycable-go sends: the
// URL, the configured headers, the client's address as REMOTE_ADDR, and
// the session id and protocol version as X-Anycable-Meta-* headers; the
// same sid comes with commands and the disconnect.
func TestCableRPCConnectEnv(t *testing.T) {
	type call struct {
		path, sid, protov string
		env               map[string]any
	}
	calls := make(chan call, 10)
	h := startRPC(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Env map[string]any `json:"env"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		calls <- call{r.URL.Path, r.Header.Get("X-Anycable-Meta-Sid"), r.Header.Get("X-Anycable-Meta-Protov"), req.Env}
		switch r.URL.Path {
		case "/_anycable/connect":
			_, _ = w.Write([]byte(`{"status":1,"identifiers":"u1"}`))
		default:
			_, _ = w.Write([]byte(`{"status":1}`))
		}
	}))
	c := h.dialCable("x=1", wire.SubprotocolExtJSON)
	sid := c.Expect("welcome")["sid"]
	connect := <-calls
	headers, _ := connect.env["headers"].(map[string]any)
	if connect.path != "/_anycable/connect" || connect.sid != sid || connect.protov != "v1" || headers["REMOTE_ADDR"] != "127.0.0.1" || !strings.HasSuffix(connect.env["url"].(string), "/cable?x=1") {
		t.Fatalf("connect %+v, want sid %v, protov v1, REMOTE_ADDR 127.0.0.1 and the URL", connect, sid)
	}
	c.Close()
	if d := <-calls; d.path != "/_anycable/disconnect" || d.sid != sid {
		t.Fatalf("after the close: %+v, want the disconnect with sid %v", d, sid)
	}
}

// TestCableRPCSharedStream: two channels of one connection that follow the
// same stream each receive its broadcasts, under their own identifiers;
// when one stops, the other keeps receiving; when both stop, none arrive.
func TestCableRPCSharedStream(t *testing.T) {
	h := startRPC(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Command    string `json:"command"`
			Identifier string `json:"identifier"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		switch {
		case r.URL.Path == "/_anycable/connect":
			_, _ = w.Write([]byte(`{"status":1,"identifiers":"u1"}`))
		case req.Command == "subscribe":
			confirm := `{"type":"confirm_subscription","identifier":` + jsonString(req.Identifier) + `}`
			_, _ = w.Write([]byte(`{"status":1,"streams":["room:shared"],"transmissions":[` + jsonString(confirm) + `]}`))
		default:
			_, _ = w.Write([]byte(`{"status":1}`))
		}
	}))
	const a, b = `{"channel":"A"}`, `{"channel":"B"}`
	c := h.dialCable("", wire.SubprotocolJSON)
	c.Expect("welcome")
	c.Subscribe(a)
	c.Subscribe(b)
	publish := func(data string) {
		t.Helper()
		if code, resp := h.apiPublish(`{"stream":"room:shared","data":"` + data + `"}`); code != http.StatusOK {
			t.Fatalf("publish: %d %s", code, resp)
		}
	}
	got := func(n int) map[string]any {
		t.Helper()
		m := map[string]any{}
		for range n {
			msg := c.Expect("")
			m[msg["identifier"].(string)] = msg["message"]
		}
		return m
	}
	publish("one")
	if m := got(2); m[a] != "one" || m[b] != "one" {
		t.Fatalf("got %v, want one under both identifiers", m)
	}
	c.Send(map[string]any{"command": "unsubscribe", "identifier": a})
	time.Sleep(200 * time.Millisecond) // the backend's answer applies it
	publish("two")
	if m := got(1); m[b] != "two" {
		t.Fatalf("got %v, want two under B only", m)
	}
	c.Send(map[string]any{"command": "unsubscribe", "identifier": b})
	time.Sleep(200 * time.Millisecond)
	publish("three")
	c.Quiet(300 * time.Millisecond)
}

// rpcLog is a backend that records its calls in order ("connect",
// "subscribe <identifier>", "message", "unsubscribe", "disconnect"),
// accepting everything, after delay.
type rpcLog struct {
	mu    sync.Mutex
	calls []string
	delay time.Duration
}

func (l *rpcLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Command    string `json:"command"`
		Identifier string `json:"identifier"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	l.mu.Lock()
	delay := l.delay
	l.mu.Unlock()
	time.Sleep(delay)
	name := strings.TrimPrefix(r.URL.Path, "/_anycable/")
	if name == "command" {
		name = req.Command
	}
	l.mu.Lock()
	l.calls = append(l.calls, name)
	l.mu.Unlock()
	switch {
	case name == "connect":
		_, _ = w.Write([]byte(`{"status":1,"identifiers":"u1"}`))
	case name == "subscribe":
		confirm := `{"type":"confirm_subscription","identifier":` + jsonString(req.Identifier) + `}`
		_, _ = w.Write([]byte(`{"status":1,"streams":["room:x"],"transmissions":[` + jsonString(confirm) + `]}`))
	default:
		_, _ = w.Write([]byte(`{"status":1}`))
	}
}

// waitCalls waits until the log ends with last, and returns it.
func (l *rpcLog) waitCalls(t *testing.T, last string) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		calls := slices.Clone(l.calls)
		l.mu.Unlock()
		if len(calls) > 0 && calls[len(calls)-1] == last {
			return calls
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls %v, want them to end with %s", calls, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCableRPCCloseDuringConnect: a client gone while the application
// was still accepting it is reported to the application all the same.
func TestCableRPCCloseDuringConnect(t *testing.T) {
	backend := &rpcLog{delay: 300 * time.Millisecond}
	h := startRPC(t, backend)
	c := h.dialCable("", wire.SubprotocolExtJSON)
	time.Sleep(50 * time.Millisecond) // the connect is at the backend
	c.Close()
	if calls := backend.waitCalls(t, "disconnect"); !slices.Equal(calls, []string{"connect", "disconnect"}) {
		t.Fatalf("calls %v, want connect then disconnect", calls)
	}
}

// TestCableRPCCloseDropsQueue: the commands still waiting for the backend
// when the connection closes are dropped; the disconnect comes last.
func TestCableRPCCloseDropsQueue(t *testing.T) {
	backend := &rpcLog{}
	h := startRPC(t, backend)
	c := h.dialCable("", wire.SubprotocolExtJSON)
	c.Expect("welcome")
	const id = `{"channel":"Room"}`
	c.Subscribe(id)
	backend.mu.Lock()
	backend.delay = 200 * time.Millisecond
	backend.mu.Unlock()
	for range 10 {
		c.Send(map[string]any{"command": "message", "identifier": id, "data": `{"action":"x"}`})
	}
	time.Sleep(50 * time.Millisecond)
	c.Close()
	calls := backend.waitCalls(t, "disconnect")
	if n := strings.Count(strings.Join(calls, " "), "message"); n > 2 {
		t.Fatalf("calls %v: %d messages made after the close, want at most the one in flight", calls, n)
	}
}

// TestCableRPCResubscribe: a subscribe right after an unsubscribe of the
// same channel (a component remounting) waits behind it and is confirmed.
func TestCableRPCResubscribe(t *testing.T) {
	backend := &rpcLog{delay: 50 * time.Millisecond}
	h := startRPC(t, backend)
	c := h.dialCable("", wire.SubprotocolExtJSON)
	c.Expect("welcome")
	const id = `{"channel":"Room"}`
	c.Subscribe(id)
	c.Send(map[string]any{"command": "unsubscribe", "identifier": id})
	c.Subscribe(id)
	if code, resp := h.apiPublish(`{"stream":"room:x","data":"after"}`); code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, resp)
	}
	if m := c.Expect(""); m["message"] != "after" || m["identifier"] != id {
		t.Fatalf("got %v, want the broadcast on the channel subscribed again", m)
	}
	backend.mu.Lock()
	defer backend.mu.Unlock()
	if !slices.Equal(backend.calls, []string{"connect", "subscribe", "unsubscribe", "subscribe"}) {
		t.Fatalf("calls %v", backend.calls)
	}
}

// TestCableRPCShutdownDisconnects: a drain makes every accepted
// connection's disconnect call before Shutdown returns.
func TestCableRPCShutdownDisconnects(t *testing.T) {
	backend := &rpcLog{}
	h := startRPC(t, backend)
	const n = 20
	for range n {
		h.dialCable("", wire.SubprotocolExtJSON).Expect("welcome")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	backend.mu.Lock()
	defer backend.mu.Unlock()
	if got := strings.Count(strings.Join(backend.calls, " "), "disconnect"); got != n {
		t.Fatalf("%d disconnect calls when Shutdown returned, want %d", got, n)
	}
}

// TestCableRPCJID: a jid token skips the connect call, not the
// application's channels: their commands carry the token's identifiers,
// and the disconnect follows.
func TestCableRPCJID(t *testing.T) {
	var mu sync.Mutex
	var seen []string // path and connection identifiers
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Command     string `json:"command"`
			Identifier  string `json:"identifier"`
			Identifiers string `json:"connection_identifiers"`
			Disconnect  string `json:"identifiers"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		seen = append(seen, strings.TrimPrefix(r.URL.Path, "/_anycable/")+" "+req.Command+" "+req.Identifiers+req.Disconnect)
		mu.Unlock()
		if req.Command == "subscribe" {
			confirm := `{"type":"confirm_subscription","identifier":` + jsonString(req.Identifier) + `}`
			_, _ = w.Write([]byte(`{"status":1,"streams":["room:j"],"transmissions":[` + jsonString(confirm) + `]}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":1}`))
	}))
	defer backend.Close()
	h := startCable(t, func(o *harnessOpts) { o.cfg.RPCURL = backend.URL + "/_anycable" })
	c := h.dialCable("jid="+signJID(t, `{"user_id":"42"}`, time.Now().Add(time.Hour)), wire.SubprotocolExtJSON)
	c.Expect("welcome")
	c.Subscribe(`{"channel":"Room"}`)
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := strings.Join(seen, "|")
		mu.Unlock()
		want := `command subscribe {"user_id":"42"}|disconnect  {"user_id":"42"}`
		if got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls %q, want %q", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCableRPCNoRestore: a connection the application accepted is not
// restored from the session store: its reconnect asks the application
// again.
func TestCableRPCNoRestore(t *testing.T) {
	backend := &rpcLog{}
	h := startRPC(t, backend, func(o *harnessOpts) { o.rules = append(o.rules, "open=sub") })
	c := h.dialCable("", wire.SubprotocolExtJSON)
	sid := c.Expect("welcome")["sid"].(string)
	c.Subscribe(cabletest.PubSub("open"))
	c.Close() // dropped, no close frame
	backend.waitCalls(t, "disconnect")
	c2 := h.dialCable("sid="+sid, wire.SubprotocolExtJSON)
	if m := c2.Expect("welcome"); m["restored"] == true {
		t.Fatalf("welcome %v: restored without the application", m)
	}
	if calls := backend.waitCalls(t, "connect"); !slices.Equal(calls, []string{"connect", "disconnect", "connect"}) {
		t.Fatalf("calls %v, want the second connect asked too", calls)
	}
}

// TestCableRPCHistoryStreamRefused: when one of an application channel's
// streams cannot be followed (here, past --max-subscriptions), its history
// request is answered all the same: reject_history.
func TestCableRPCHistoryStreamRefused(t *testing.T) {
	h := startRPC(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_anycable/connect":
			_, _ = w.Write([]byte(`{"status":1,"identifiers":"u1"}`))
		case "/_anycable/command":
			_, _ = w.Write([]byte(`{"status":1,"streams":["room:a","room:b"],"transmissions":["{\"type\":\"confirm_subscription\",\"identifier\":\"{\\\"channel\\\":\\\"Room\\\"}\"}"]}`))
		}
	}), func(o *harnessOpts) { o.cfg.MaxSubscriptions = 1 })
	c := h.dialCable("", wire.SubprotocolExtJSON)
	c.Expect("welcome")
	c.Send(map[string]any{"command": "subscribe", "identifier": `{"channel":"Room"}`, "history": map[string]any{"since": time.Now().Unix() - 10}})
	c.Expect("confirm_subscription")
	if m := c.Expect("reject_history"); m["identifier"] != `{"channel":"Room"}` {
		t.Fatalf("got %v", m)
	}
}
