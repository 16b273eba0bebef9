package rpc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func guardFor(t *testing.T, url string) *Guard {
	t.Helper()
	c, err := New(Config{URL: url, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuard(c, GuardConfig{FirstRetry: 10 * time.Millisecond, RetryFor: 500 * time.Millisecond, ProbeEvery: 50 * time.Millisecond})
	t.Cleanup(g.Close)
	return g
}

// TestGuardRetriesBusy: a backend answering 503 is asked again with
// backoff, and the call succeeds once it answers.
func TestGuardRetriesBusy(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"status":1,"identifiers":"u"}`))
	}))
	defer srv.Close()
	g := guardFor(t, srv.URL)
	resp, err := g.Connect(t.Context(), &ConnectRequest{})
	if err != nil || resp.Identifiers != "u" {
		t.Fatalf("connect: %v %+v", err, resp)
	}
	if calls.Load() != 3 || g.Retries() != 2 {
		t.Fatalf("%d calls, %d retries; want 3 and 2", calls.Load(), g.Retries())
	}
}

// TestGuardNoRetryOnAnswer: an answer that is an error (500, garbage, a
// timeout) is not retried: the call may have run.
func TestGuardNoRetryOnAnswer(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	g := guardFor(t, srv.URL)
	if _, err := g.Command(t.Context(), &CommandRequest{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("command: %v, want ErrUnavailable", err)
	}
	if calls.Load() != 1 || g.Retries() != 0 {
		t.Fatalf("%d calls, %d retries; want 1 and 0", calls.Load(), g.Retries())
	}
}

// TestGuardDownThenUp: a backend that refuses connections is down after
// three calls in a row failed; calls then fail at once, and the probe
// brings it back up when it listens again, with no client call.
func TestGuardDownThenUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	g := guardFor(t, "http://"+addr)
	for i := range 3 {
		if down, _, _ := g.Health(); down {
			t.Fatalf("down after %d failed calls, want 3", i)
		}
		if _, err := g.Connect(t.Context(), &ConnectRequest{}); !errors.Is(err, ErrUnavailable) || !Retryable(err) {
			t.Fatalf("connect to nothing: %v, want a retryable ErrUnavailable", err)
		}
	}
	down, since, lastErr := g.Health()
	if !down || since.IsZero() || lastErr == nil {
		t.Fatalf("health %v %v %v after 3 failed calls, want down", down, since, lastErr)
	}
	retries := g.Retries()
	start := time.Now()
	if _, err := g.Connect(t.Context(), &ConnectRequest{}); err == nil {
		t.Fatal("connect to nothing succeeded")
	}
	if g.Retries() != retries {
		t.Fatalf("a down backend was retried (%d retries, were %d; took %v)", g.Retries(), retries, time.Since(start))
	}
	var probed atomic.Int32
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probed.Add(1)
		_, _ = w.Write([]byte(`{"status":2}`)) // a refused connect is an answer
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if down, _, _ := g.Health(); !down {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still down 5s after the backend came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if probed.Load() == 0 {
		t.Fatal("up again without a call")
	}
}

// TestGuardBusyIsNotDown: calls that give up waiting for a call slot never
// reached the backend, so a slow but answering backend under a connect
// storm stays up.
func TestGuardBusyIsNotDown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(40 * time.Millisecond)
		_, _ = w.Write([]byte(`{"status":1}`))
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL, Concurrency: 2, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuard(c, GuardConfig{})
	defer g.Close()
	var wg sync.WaitGroup
	var busy atomic.Int32
	for range 20 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
			defer cancel()
			if _, err := g.Connect(ctx, &ConnectRequest{}); errors.Is(err, ErrAbandoned) {
				busy.Add(1)
			}
		})
	}
	wg.Wait()
	if busy.Load() == 0 {
		t.Fatal("no call waited for a slot in vain; the test proves nothing")
	}
	if down, _, err := g.Health(); down {
		t.Fatalf("down after %d calls found no slot: %v", busy.Load(), err)
	}
}
