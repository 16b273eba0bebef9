package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/webhooks"
)

var hookSecret = []byte("webhook-secret")

// hookReceiver is the application's webhook endpoint: a real HTTP server
// on 127.0.0.1 that verifies every request and records its events.
type hookReceiver struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	events []webhooks.Event
	ids    map[string]bool
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{t: t, ids: map[string]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := webhooks.Verify(hookSecret, req.Header.Get(webhooks.HeaderTimestamp), req.Header.Get(webhooks.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			t.Errorf("webhook: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p struct{ Events []webhooks.Event }
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("webhook body %s: %v", body, err)
		}
		r.mu.Lock()
		for _, e := range p.Events {
			if r.ids[e.ID] {
				t.Errorf("event id %s twice", e.ID)
			}
			r.ids[e.ID] = true
			r.events = append(r.events, e)
		}
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// key names an event for the tests: "type stream user client".
func key(e webhooks.Event) string {
	return strings.TrimSpace(fmt.Sprintf("%s %s %s %s", e.Type, e.Stream, e.User, e.Client))
}

// count returns how many events match k (a key prefix).
func (r *hookReceiver) count(k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if strings.HasPrefix(key(e), k) {
			n++
		}
	}
	return n
}

// wait waits until an event matching k arrived and returns it.
func (r *hookReceiver) wait(k string, within time.Duration) webhooks.Event {
	r.t.Helper()
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		for _, e := range r.events {
			if strings.HasPrefix(key(e), k) {
				r.mu.Unlock()
				return e
			}
		}
		r.mu.Unlock()
	}
	r.t.Fatalf("no webhook event %q within %v; got %s", k, within, r.dump())
	return webhooks.Event{}
}

func (r *hookReceiver) none(k string) {
	r.t.Helper()
	if n := r.count(k); n != 0 {
		r.t.Fatalf("%d webhook events %q, want none; got %s", n, k, r.dump())
	}
}

func (r *hookReceiver) once(k string) {
	r.t.Helper()
	if n := r.count(k); n != 1 {
		r.t.Fatalf("%d webhook events %q, want 1; got %s", n, k, r.dump())
	}
}

func (r *hookReceiver) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.events {
		b.WriteString("\n  " + key(e))
	}
	return b.String()
}

func withWebhooks(url string, grace time.Duration) func(*harnessOpts) {
	return func(o *harnessOpts) {
		ep, err := webhooks.ParseEndpoint(url)
		if err != nil {
			panic(err)
		}
		o.cfg.Presence.Grace = grace
		o.cfg.Webhooks = webhooks.Config{Endpoints: []webhooks.Endpoint{ep}, Secret: hookSecret, BatchWait: 20 * time.Millisecond}
	}
}

// TestWebhookPresence: a /ws client's join is told with its info and
// state; when its connection drops and it reconnects within the grace,
// the new connection's join comes and nothing else until the old one's
// leave at the grace's end; the stream is not vacated nor the user
// disconnected meanwhile.
func TestWebhookPresence(t *testing.T) {
	t.Parallel()
	const grace = 800 * time.Millisecond
	rc := newHookReceiver(t)
	h := start(t, withWebhooks(rc.srv.URL, grace))
	const stream = "doc:hooks"

	a1 := prUser(t, h, "alice", stream)
	a1.sub(t, 2, map[string]any{"v": 1})
	j := rc.wait("presence.join "+stream+" alice "+a1.me.Client, wait)
	if string(j.State) != `{"v":1}` || string(j.Info) != `{"name":"ALICE"}` || j.Node != h.srv.Node() {
		t.Fatalf("join %+v, want state {\"v\":1}, info {\"name\":\"ALICE\"}, node %s", j, h.srv.Node())
	}
	rc.wait("stream.occupied "+stream, wait)

	a1.c.Close() // no close frame: the peer vanished
	dropped := time.Now()
	time.Sleep(100 * time.Millisecond)
	a2 := prUser(t, h, "alice", stream)
	a2.sub(t, 2, map[string]any{"v": 2})
	// alice never stopped being present: her new connection is no join,
	// and her old one's leave after the grace is no leave.
	time.Sleep(time.Until(dropped.Add(2 * grace)))
	rc.once("presence.") // the first join only
	rc.none("stream.vacated")
	rc.none("user.disconnected")

	// bob joins from two connections: one join; he leaves once both left.
	b1 := prUser(t, h, "bob", stream)
	b1.sub(t, 2, map[string]any{})
	rc.wait("presence.join "+stream+" bob "+b1.me.Client, wait)
	b2 := prUser(t, h, "bob", stream)
	b2.sub(t, 2, map[string]any{})
	b1.leave(t, 3)
	time.Sleep(300 * time.Millisecond)
	rc.none("presence.leave")
	b2.leave(t, 3)
	rc.wait("presence.leave "+stream+" bob", wait)

	a2.leave(t, 3)
	rc.wait("presence.leave "+stream+" alice", wait)
	a2.c.Close()
	b1.c.Close()
	b2.c.Close()
	rc.wait("stream.vacated "+stream, grace+wait)
	rc.wait("user.disconnected  alice", grace+wait)
	time.Sleep(300 * time.Millisecond)
	rc.once("presence.join " + stream + " alice " + a1.me.Client)
	rc.once("presence.leave " + stream + " alice")
	rc.once("presence.join " + stream + " bob " + b1.me.Client)
	rc.once("presence.leave " + stream + " bob")
	rc.once("stream.occupied " + stream)
	rc.once("stream.vacated " + stream)
	rc.once("user.disconnected  alice")
}

// TestWebhookOccupancy: a stream is occupied by its first subscriber and
// vacated after its last; a user is disconnected only after its last
// connection; an endpoint gets only the events it asked for.
func TestWebhookOccupancy(t *testing.T) {
	t.Parallel()
	const grace = 300 * time.Millisecond
	rc := newHookReceiver(t)
	h := start(t, withWebhooks(rc.srv.URL+"/hooks;events=stream.*,user.disconnected", grace))

	b1 := prUser(t, h, "bob", "room:1")
	b2 := prUser(t, h, "bob", "room:1")
	b1.sub(t, 2, map[string]any{"here": true})
	rc.wait("stream.occupied room:1", wait)
	b2.sub(t, 2, nil)
	b1.c.Close()
	time.Sleep(grace + 500*time.Millisecond)
	rc.none("stream.vacated")
	rc.none("user.disconnected")
	b2.c.Close()
	rc.wait("stream.vacated room:1", grace+wait)
	rc.wait("user.disconnected  bob", grace+wait)

	time.Sleep(300 * time.Millisecond)
	rc.once("stream.occupied room:1")
	rc.once("stream.vacated room:1")
	rc.once("user.disconnected  bob")
	rc.none("presence.")

	_, _, body := apiCall(t, h, "GET", "/metrics", "Bearer "+testAPIKey, "")
	for _, want := range []string{`huddle_webhook_events_total{result="sent"} 3`, `huddle_webhook_events_total{result="dropped"} 0`, "huddle_webhook_queue 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestWebhookDrain: a node that shuts down vacates its streams,
// disconnects its users and flushes its queue before Shutdown returns.
func TestWebhookDrain(t *testing.T) {
	t.Parallel()
	rc := newHookReceiver(t)
	h := start(t, withWebhooks(rc.srv.URL, time.Minute))
	c := prUser(t, h, "carol", "doc:drain")
	c.sub(t, 2, map[string]any{"v": 1})
	rc.wait("stream.occupied doc:drain", wait)
	rc.wait("presence.join doc:drain carol", wait)
	if err := h.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	// No waiting: Shutdown returned after the flush.
	rc.once("presence.leave doc:drain carol")
	rc.once("stream.vacated doc:drain")
	rc.once("user.disconnected  carol")
}
