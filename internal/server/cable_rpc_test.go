package server_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/frontend/cable/cabletest"
	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// startRPC is a node whose /cable backend is the handler h.
func startRPC(t *testing.T, h http.Handler) *harness {
	backend := httptest.NewServer(h)
	t.Cleanup(backend.Close)
	return start(t, func(o *harnessOpts) {
		o.cfg.RPCURL = backend.URL + "/_anycable"
		o.auth.AllowAnonymous = true
	})
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
