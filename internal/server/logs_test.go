package server_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogs: refused clients are logged at info level at most once per 10
// seconds (with how many more there were, and never the token), and each
// connection's connect and close only at debug level.
func TestLogs(t *testing.T) {
	var buf syncBuffer
	var level slog.LevelVar
	h := start(t, func(o *harnessOpts) {
		o.cfg.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: &level}))
	})
	bad := "not-a-token-but-a-secret-value"
	for range 5 {
		c := dialRaw(t, h.URL, wsclient.Options{})
		if _, err := c.Connect(bad, wait); err == nil {
			t.Fatal("a bad token connected")
		}
		c.Close()
	}
	expired := tokenWith(t, "late", time.Now().Add(-time.Minute), allStreams)
	c := dialRaw(t, h.URL, wsclient.Options{})
	if _, err := c.Connect(expired, wait); err == nil {
		t.Fatal("an expired token connected")
	}
	out := buf.String()
	if n := strings.Count(out, "client refused"); n != 1 {
		t.Fatalf("%d lines for 6 refused clients within 10 s, want 1:\n%s", n, out)
	}
	if strings.Contains(out, bad) || strings.Contains(out, expired) {
		t.Fatalf("a token reached the log:\n%s", out)
	}
	if strings.Contains(out, "level=DEBUG") {
		t.Fatalf("debug lines at info level:\n%s", out)
	}
	level.Set(slog.LevelDebug)
	ok := dialUser(t, h, "ann")
	ok.Close()
	deadline := time.Now().Add(wait)
	for !strings.Contains(buf.String(), `msg=closed client=`) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out = buf.String()
	if !strings.Contains(out, "msg=connected") || !strings.Contains(out, "user=ann") || !strings.Contains(out, "msg=closed") {
		t.Fatalf("no debug lines for a connection at debug level:\n%s", out)
	}
}

// TestMetricsNames: /metrics has the Go runtime's and the process's
// metrics, byte counters with their unit, and, once a publication reached a
// subscriber, the publish-to-deliver histogram in seconds.
func TestMetricsNames(t *testing.T) {
	h := start(t)
	c := dialUser(t, h, "ann")
	subscribe(t, c, 1, "m:1", nil)
	if code, body := h.apiPublish(`{"stream":"m:1","data":1}`); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	if _, err := wsclient.Wait[*protocol.Pub](c, wait); err != nil {
		t.Fatal(err)
	}
	st, _, b := apiCall(t, h, "GET", "/metrics", "Bearer "+testAPIKey, "")
	if st != 200 {
		t.Fatalf("/metrics: %d", st)
	}
	for _, name := range []string{
		"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total",
		"huddle_received_bytes_total", "huddle_sent_bytes_total",
		"huddle_publish_deliver_duration_seconds_bucket", "huddle_publish_enqueue_duration_seconds_bucket",
	} {
		if !strings.Contains(string(b), "\n"+name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", b)
	}
}
