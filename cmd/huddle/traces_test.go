package main

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/huddle-rt/huddle/internal/frontend/cable/cabletest"
	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
	"github.com/huddle-rt/huddle/internal/redistest"
)

// otlpReceiver is an OTLP/HTTP trace receiver: it keeps every span's name
// by trace id.
type otlpReceiver struct {
	mu    sync.Mutex
	spans map[string][]string // trace id (hex) -> span names
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				id := hex.EncodeToString(s.TraceId)
				o.spans[id] = append(o.spans[id], s.Name)
			}
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// waitSpans waits until trace id holds spans with every name prefix.
func (o *otlpReceiver) waitSpans(t *testing.T, traceID string, prefixes ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		o.mu.Lock()
		names := append([]string(nil), o.spans[traceID]...)
		o.mu.Unlock()
		missing := ""
		for _, p := range prefixes {
			found := false
			for _, n := range names {
				found = found || strings.HasPrefix(n, p)
			}
			if !found {
				missing = p
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s: no span %q within 10s; it has %q", traceID, missing, names)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// headerTrap records the traceparent of every request it gets.
type headerTrap struct {
	mu      sync.Mutex
	parents []string
	answer  string
}

func (h *headerTrap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	if tp := r.Header.Get("Traceparent"); tp != "" {
		h.parents = append(h.parents, tp)
	}
	h.mu.Unlock()
	_, _ = io.WriteString(w, h.answer)
}

// traceID is the trace id of the first traceparent that came (waiting).
func (h *headerTrap) traceID(t *testing.T, what string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		var tp string
		if len(h.parents) > 0 {
			tp = h.parents[0]
		}
		h.mu.Unlock()
		if parts := strings.Split(tp, "-"); len(parts) == 4 {
			return parts[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s got no traceparent header", what)
	return ""
}

// TestTraces: with OTEL_EXPORTER_OTLP_ENDPOINT set, spans reach an OTLP
// receiver: an API request continues the caller's trace (traceparent in)
// and its Redis commands are its children; an RPC call and a webhook are
// spans whose trace context reaches the application (traceparent out).
func TestTraces(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a private redis-server")
	}
	recv := &otlpReceiver{spans: map[string][]string{}}
	otlp := httptest.NewServer(recv)
	defer otlp.Close()
	backend := &headerTrap{answer: `{"status":1,"identifiers":"{\"u\":1}","transmissions":[]}`}
	rpcSrv := httptest.NewServer(backend)
	defer rpcSrv.Close()
	hooks := &headerTrap{answer: "ok"}
	webhook := httptest.NewServer(hooks)
	defer webhook.Close()
	redis := redistest.Start(t)
	bin := e2eBuild(t)
	addr := e2eFreeAddr(t)
	p := e2eStart(t, bin, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp.URL, "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_SERVICE_NAME=huddle-test"},
		"--addr", addr, "--secret", e2eSecret, "--api-key", e2eAPIKey, "--log-level", "info",
		"--broker", "redis", "--redis-url", redis.URL(), "--rpc-url", rpcSrv.URL+"/_anycable", "--rule", "tr:*=sub",
		"--webhook-url", webhook.URL+";events=stream.occupied", "--webhook-secret", "webhook-secret-0123456789", "--webhook-batch-wait", "10ms")
	p.waitReady(t)

	// An API call that carries a trace context continues it.
	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/publish", strings.NewReader(`{"stream":"tr:1","data":1}`))
	req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
	req.Header.Set("Traceparent", "00-"+caller+"-00f067aa0ba902b7-01")
	resp, err := e2eHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %s", resp.Status)
	}
	recv.waitSpans(t, caller, "POST /api/publish", "redis ")

	// A /cable client: the RPC connect is a span whose context reaches the
	// backend; its subscribe occupies a stream, whose webhook carries a
	// trace context too.
	c := cabletest.Dial(t, "ws://"+addr+"/cable", wire.SubprotocolExtJSON)
	c.Expect("welcome")
	recv.waitSpans(t, backend.traceID(t, "the RPC backend"), "anycable.rpc connect")
	c.Subscribe(`{"channel":"$pubsub","stream_name":"tr:2"}`)
	recv.waitSpans(t, hooks.traceID(t, "the webhook receiver"), "HTTP POST")
	if !strings.Contains(p.out.String(), "traces go to OTLP") {
		t.Errorf("the log does not say where traces go:\n%s", p.out.String())
	}
}
