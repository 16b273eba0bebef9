package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCalls: requests go to base/<call> as the JSON of rpc.proto with the
// secret as a bearer token, and answers decode with the status as a number
// or a name.
func TestCalls(t *testing.T) {
	var got struct {
		path, auth string
		body       map[string]any
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.path, got.auth = r.URL.Path, r.Header.Get("Authorization")
		_ = json.NewDecoder(r.Body).Decode(&got.body)
		switch r.URL.Path {
		case "/_anycable/connect":
			_, _ = w.Write([]byte(`{"status":1,"identifiers":"{\"user_id\":\"7\"}","transmissions":["{\"type\":\"welcome\"}"],"env":{"cstate":{"a":"b"}}}`))
		case "/_anycable/command":
			_, _ = w.Write([]byte(`{"status":"FAILURE","streams":["s"],"stopped_streams":["t"],"stop_streams":true}`))
		default:
			_, _ = w.Write([]byte(`{"status":1}`))
		}
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL + "/_anycable", Secret: "sekret"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cr, err := c.Connect(ctx, &ConnectRequest{Env: Env{URL: "ws://x/cable?token=1", Headers: map[string]string{"cookie": "c=1"}}})
	if err != nil || cr.Status != Success || cr.Identifiers != `{"user_id":"7"}` || len(cr.Transmissions) != 1 || cr.Env.CState["a"] != "b" {
		t.Fatalf("connect: %+v %v", cr, err)
	}
	if got.path != "/_anycable/connect" || got.auth != "Bearer sekret" || got.body["env"].(map[string]any)["url"] != "ws://x/cable?token=1" {
		t.Fatalf("connect request: %+v", got)
	}
	mr, err := c.Command(ctx, &CommandRequest{Command: "subscribe", Identifier: "I", ConnectionIdentifiers: "C"})
	if err != nil || mr.Status != Failure || !mr.StopStreams || mr.Streams[0] != "s" || mr.StoppedStreams[0] != "t" {
		t.Fatalf("command: %+v %v", mr, err)
	}
	if got.body["connection_identifiers"] != "C" || got.body["command"] != "subscribe" {
		t.Fatalf("command request: %+v", got.body)
	}
	if dr, err := c.Disconnect(ctx, &DisconnectRequest{Identifiers: "C", Subscriptions: []string{"I"}}); err != nil || dr.Status != Success {
		t.Fatalf("disconnect: %+v %v", dr, err)
	}
}

// TestUnavailable: a backend that is down, slow past the timeout, failing
// or answering garbage gives ErrUnavailable.
func TestUnavailable(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>")) }))
	defer garbage.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer failing.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	for name, u := range map[string]string{"slow": slow.URL, "garbage": garbage.URL, "failing": failing.URL, "down": down.URL} {
		c, err := New(Config{URL: u, Timeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Connect(t.Context(), &ConnectRequest{}); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
	}
	if _, err := New(Config{URL: "grpc://x:50051"}); err == nil {
		t.Error("a grpc:// URL was taken for HTTP")
	}
}

// TestConcurrencyBound: no more than Concurrency calls are in flight; the
// rest wait for a slot.
func TestConcurrencyBound(t *testing.T) {
	var inFlight, most atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		inFlight.Add(-1)
		_, _ = w.Write([]byte(`{"status":1}`))
	}))
	defer srv.Close()
	c, _ := New(Config{URL: srv.URL, Concurrency: 3})
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Command(context.Background(), &CommandRequest{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if m := most.Load(); m > 3 || m < 2 {
		t.Fatalf("%d calls were in flight at most, want 3", m)
	}
}
