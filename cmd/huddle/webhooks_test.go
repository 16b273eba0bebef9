package main

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
	"github.com/huddle-rt/huddle/protocol"
)

const clusterHookSecret = "cluster-webhook-secret"

// hookSink is the application's webhook endpoint for several nodes: a
// real HTTP server that verifies each request and records its events.
type hookSink struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	events []webhooks.Event
}

func newHookSink(t *testing.T) *hookSink {
	s := &hookSink{t: t}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhooks.Verify([]byte(clusterHookSecret), r.Header.Get(webhooks.HeaderTimestamp), r.Header.Get(webhooks.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			t.Errorf("webhook: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p struct{ Events []webhooks.Event }
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("webhook body %s: %v", body, err)
		}
		s.mu.Lock()
		s.events = append(s.events, p.Events...)
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func hookKey(e webhooks.Event) string {
	return strings.TrimSpace(fmt.Sprintf("%s %s %s", e.Type, e.Stream, e.User))
}

// count returns the events whose key is k, and the nodes that sent them.
func (s *hookSink) count(k string) (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, nodes := 0, []string(nil)
	for _, e := range s.events {
		if hookKey(e) == k {
			n++
			nodes = append(nodes, e.Node)
		}
	}
	return n, nodes
}

func (s *hookSink) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, e := range s.events {
		b.WriteString("\n  " + hookKey(e) + " from " + e.Node)
	}
	return b.String()
}

// await waits for the event k; the event must then stay unique.
func (s *hookSink) await(k string, within time.Duration) {
	s.t.Helper()
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if n, _ := s.count(k); n > 0 {
			return
		}
	}
	s.t.Fatalf("no webhook %q within %v; got %s", k, within, s.dump())
}

// times checks that event k came exactly n times.
func (s *hookSink) times(k string, n int) {
	s.t.Helper()
	if got, nodes := s.count(k); got != n {
		s.t.Fatalf("webhook %q came %d times (from %v), want %d; got %s", k, got, nodes, n, s.dump())
	}
}

// TestClusterWebhooks: three nodes on one Redis send each event exactly
// once: a stream's occupied and vacated and a user's disconnected across
// the nodes, and a user's presence joins and leaves across the nodes; a node
// killed without draining has its streams vacated, its users disconnected
// and its members' leaves sent exactly once by the survivors.
func TestClusterWebhooks(t *testing.T) {
	sink := newHookSink(t)
	c := startCluster(t, 3, nil,
		"--webhook-url", sink.srv.URL+"/hooks",
		"--webhook-secret", clusterHookSecret,
		"--webhook-node-ttl", "1500ms",
		"--webhook-batch-wait", "20ms",
	)
	join := func(node int, user, stream string) {
		t.Helper()
		cl, _ := clusterDialT(t, c.url(node), user)
		request[*protocol.Subscribed](t, cl, &protocol.Subscribe{ID: 1, S: stream, Join: protocol.MustRaw(map[string]any{"on": node})})
	}
	join(0, "alice", "doc:shared")
	bob, _ := clusterDialT(t, c.url(1), "bob")
	request[*protocol.Subscribed](t, bob, &protocol.Subscribe{ID: 1, S: "doc:shared", Join: protocol.MustRaw(map[string]any{"on": 1})})
	join(2, "carol", "doc:only2")
	join(2, "carol", "doc:shared")
	clusterDialT(t, c.url(1), "dave")
	clusterDialT(t, c.url(2), "dave")
	join(1, "dave", "doc:dave") // present from two nodes: one join
	join(2, "dave", "doc:dave")

	sink.await("stream.occupied doc:shared", e2eWait)
	sink.await("stream.occupied doc:only2", e2eWait)
	for _, who := range []string{"alice", "bob", "carol"} {
		sink.await("presence.join doc:shared "+who, e2eWait)
	}
	sink.await("presence.join doc:dave dave", e2eWait)
	time.Sleep(500 * time.Millisecond)
	sink.times("stream.occupied doc:shared", 1)
	sink.times("stream.occupied doc:only2", 1)
	sink.times("presence.join doc:shared alice", 1)
	sink.times("presence.join doc:shared bob", 1)
	sink.times("presence.join doc:shared carol", 1)
	sink.times("presence.join doc:dave dave", 1)

	c.kill(2)
	// Its entries expire after --webhook-node-ttl, its members after
	// --presence-ttl; the two survivors both sweep.
	sink.await("stream.vacated doc:only2", clusterTTL+e2eWait)
	sink.await("user.disconnected  carol", clusterTTL+e2eWait)
	sink.await("presence.leave doc:only2 carol", clusterTTL+e2eWait)
	sink.await("presence.leave doc:shared carol", clusterTTL+e2eWait)
	time.Sleep(2 * time.Second)
	sink.times("stream.vacated doc:only2", 1)
	sink.times("user.disconnected  carol", 1)
	sink.times("presence.leave doc:only2 carol", 1)
	sink.times("presence.leave doc:shared carol", 1)
	sink.times("stream.vacated doc:shared", 0)    // alice and bob are still there
	sink.times("user.disconnected  dave", 0)      // still connected to node 1
	sink.times("presence.leave doc:dave dave", 0) // and still present there

	// bob leaves; alice's node drains (SIGTERM): the stream is vacated once
	// by whichever of them was last.
	request[*protocol.Ack](t, bob, &protocol.Leave{ID: 2, S: "doc:shared"})
	sink.await("presence.leave doc:shared bob", e2eWait)
	bob.Close()
	c.proc(0).stop(t)
	sink.await("presence.leave doc:shared alice", e2eWait)
	sink.await("stream.vacated doc:shared", e2eWait)
	sink.await("user.disconnected  alice", e2eWait)
	sink.await("user.disconnected  bob", e2eWait)
	time.Sleep(time.Second)
	sink.times("stream.vacated doc:shared", 1)
	sink.times("user.disconnected  alice", 1)
	sink.times("user.disconnected  bob", 1)
	sink.times("user.disconnected  dave", 0)
	sink.times("presence.leave doc:shared bob", 1)
	sink.times("presence.leave doc:shared alice", 1)
}
