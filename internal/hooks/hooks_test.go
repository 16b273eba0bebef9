package hooks_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/hooks"
	"github.com/huddle-rt/huddle/protocol"
)

// app starts an HTTP server on 127.0.0.1 that answers every hook call with
// handle, and returns its URL.
func app(t *testing.T, handle http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(handle)
	t.Cleanup(srv.Close)
	return srv.URL
}

// answer writes body as a JSON answer.
func answer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

func newClient(t *testing.T, cfg hooks.Config) *hooks.Client {
	t.Helper()
	c, err := hooks.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     hooks.Config
		wantErr string
	}{
		{"connect", hooks.Config{ConnectURL: "http://127.0.0.1:1/connect"}, ""},
		{"all", hooks.Config{ConnectURL: "http://a/c", SubscribeURL: "https://a/s", PublishURL: "http://a/p", Headers: []string{"cookie", "x-*"}}, ""},
		{"none", hooks.Config{}, "no hook"},
		{"not http", hooks.Config{PublishURL: "ftp://a/p"}, "publish hook"},
		{"no host", hooks.Config{SubscribeURL: "http:///s"}, "subscribe hook"},
		{"bad header", hooks.Config{ConnectURL: "http://a/c", Headers: []string{"x-*-y"}}, "header"},
		{"star header", hooks.Config{ConnectURL: "http://a/c", Headers: []string{"*"}}, "header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := hooks.New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestConnect(t *testing.T) {
	var got hooks.ConnectRequest
	var auth string
	url := app(t, func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
		answer(`{"allow":true,"user":"alice","info":{"name":"Alice"},"streams":{"doc:*":["sub","pub"]},"exp":1767225600}`)(w, r)
	})
	c := newClient(t, hooks.Config{ConnectURL: url, Secret: "s3cret"})
	req := &hooks.ConnectRequest{Token: "opaque", URL: "/ws?x=1", Headers: map[string]string{"cookie": "sid=1"}, Addr: "127.0.0.1:5"}
	resp, err := c.Connect(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.User != "alice" || string(resp.Info) != `{"name":"Alice"}` || resp.Streams["doc:*"][1] != "pub" || resp.Expires().Unix() != 1767225600 {
		t.Errorf("Connect = %+v", resp)
	}
	if got.Token != "opaque" || got.URL != "/ws?x=1" || got.Headers["cookie"] != "sid=1" || got.Addr != "127.0.0.1:5" {
		t.Errorf("request = %+v", got)
	}
	if auth != "Bearer s3cret" {
		t.Errorf("Authorization = %q", auth)
	}
	if n := c.Stats(hooks.Connect).Calls.Load(); n != 1 {
		t.Errorf("Calls = %d", n)
	}
}

// outcomes drives TestOutcomes: each app answer and what the call makes of
// it, for every hook.
var outcomes = []struct {
	name    string
	handle  http.HandlerFunc
	denied  string // the refusal's reason; "" with wantErr false: allowed
	wantErr bool   // unavailable
}{
	{name: "allow", handle: answer(`{"allow":true}`)},
	{name: "allow with status 201", handle: func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"allow":true}`)
	}},
	{name: "deny with reason", handle: answer(`{"allow":false,"reason":"not a member"}`), denied: "not a member"},
	{name: "deny without reason", handle: answer(`{"allow":false}`), denied: "-"},
	{name: "long reason is cut", handle: answer(`{"allow":false,"reason":"` + strings.Repeat("é", 100) + `"}`), denied: strings.Repeat("é", 61)},
	{name: "500", handle: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }, wantErr: true},
	{name: "403 is not an answer", handle: func(w http.ResponseWriter, r *http.Request) { http.Error(w, `{"allow":false}`, 403) }, wantErr: true},
	{name: "garbage", handle: answer(`<html>hello</html>`), wantErr: true},
	{name: "empty body", handle: answer(``), wantErr: true},
	{name: "no allow", handle: answer(`{"user":"alice"}`), wantErr: true},
	{name: "allow not a bool", handle: answer(`{"allow":"yes"}`), wantErr: true},
	{name: "allow null", handle: answer(`{"allow":null}`), wantErr: true},
}

func TestOutcomes(t *testing.T) {
	for _, tt := range outcomes {
		t.Run(tt.name, func(t *testing.T) {
			url := app(t, tt.handle)
			c := newClient(t, hooks.Config{ConnectURL: url, SubscribeURL: url, PublishURL: url})
			ctx := context.Background()
			calls := map[hooks.Hook]func() error{
				hooks.Connect: func() error { _, err := c.Connect(ctx, &hooks.ConnectRequest{}); return err },
				hooks.Subscribe: func() error {
					_, err := c.Subscribe(ctx, &hooks.SubscribeRequest{Stream: "doc:1"})
					return err
				},
				hooks.Publish: func() error {
					_, err := c.Publish(ctx, &hooks.PublishRequest{Stream: "doc:1", Data: json.RawMessage(`1`)})
					return err
				},
			}
			for h, call := range calls {
				err := call()
				var d *hooks.Denied
				switch {
				case tt.wantErr:
					if !errors.Is(err, hooks.ErrUnavailable) || errors.As(err, &d) {
						t.Errorf("%s: error %v, want ErrUnavailable", h, err)
					}
					if hooks.Code(err) != protocol.CodeInternal {
						t.Errorf("%s: Code = %v, want 4500", h, hooks.Code(err))
					}
					if c.Stats(h).Unavailable.Load() != 1 {
						t.Errorf("%s: Unavailable = %d", h, c.Stats(h).Unavailable.Load())
					}
				case tt.denied != "":
					if !errors.As(err, &d) || errors.Is(err, hooks.ErrUnavailable) {
						t.Fatalf("%s: error %v, want *Denied", h, err)
					}
					if want := strings.TrimPrefix(tt.denied, "-"); d.Reason != want {
						t.Errorf("%s: reason %q, want %q", h, d.Reason, want)
					}
					if hooks.Code(err) != protocol.CodeForbidden {
						t.Errorf("%s: Code = %v, want 4003", h, hooks.Code(err))
					}
					if c.Stats(h).Denied.Load() != 1 {
						t.Errorf("%s: Denied = %d", h, c.Stats(h).Denied.Load())
					}
				default:
					if err != nil {
						t.Errorf("%s: %v", h, err)
					}
				}
			}
		})
	}
}

func TestPublishReplace(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string // resp.Data; "" for none
	}{
		{"keep", `{"allow":true}`, ""},
		{"replace", `{"allow":true,"data":{"text":"clean","n":2}}`, `{"text":"clean","n":2}`},
		{"replace with null", `{"allow":true,"data":null}`, `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got hooks.PublishRequest
			url := app(t, func(w http.ResponseWriter, r *http.Request) {
				_ = json.NewDecoder(r.Body).Decode(&got)
				answer(tt.body)(w, r)
			})
			c := newClient(t, hooks.Config{PublishURL: url})
			resp, err := c.Publish(context.Background(), &hooks.PublishRequest{Client: "c1", User: "u", Stream: "doc:1", Data: json.RawMessage(`{"text":"dirty"}`)})
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.Data) != tt.want {
				t.Errorf("Data = %s, want %s", resp.Data, tt.want)
			}
			if got.Client != "c1" || got.User != "u" || got.Stream != "doc:1" || string(got.Data) != `{"text":"dirty"}` {
				t.Errorf("request = %+v", got)
			}
		})
	}
}

func TestSubscribeInfo(t *testing.T) {
	url := app(t, answer(`{"allow":true,"info":{"role":"editor"},"presence":true}`))
	c := newClient(t, hooks.Config{SubscribeURL: url})
	resp, err := c.Subscribe(context.Background(), &hooks.SubscribeRequest{Client: "c", Stream: "doc:1", Join: true})
	if err != nil || string(resp.Info) != `{"role":"editor"}` || !resp.Presence {
		t.Fatalf("Subscribe = %+v, %v", resp, err)
	}
	bad := newClient(t, hooks.Config{SubscribeURL: app(t, answer(`{"allow":true,"info":"editor"}`))})
	if _, err := bad.Subscribe(context.Background(), &hooks.SubscribeRequest{Stream: "doc:1"}); !errors.Is(err, hooks.ErrUnavailable) {
		t.Errorf("info not an object: error %v, want ErrUnavailable", err)
	}
}

func TestSlowIsUnavailable(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	url := app(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c := newClient(t, hooks.Config{PublishURL: url, PublishTimeout: 50 * time.Millisecond})
	start := time.Now()
	_, err := c.Publish(context.Background(), &hooks.PublishRequest{Stream: "s", Data: json.RawMessage(`1`)})
	if !errors.Is(err, hooks.ErrUnavailable) {
		t.Fatalf("error %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v with a 50ms timeout", d)
	}
}

func TestDownIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := newClient(t, hooks.Config{ConnectURL: "http://" + addr + "/connect"})
	if _, err := c.Connect(context.Background(), &hooks.ConnectRequest{}); !errors.Is(err, hooks.ErrUnavailable) {
		t.Fatalf("error %v, want ErrUnavailable", err)
	}
}

func TestNoHook(t *testing.T) {
	c := newClient(t, hooks.Config{ConnectURL: "http://127.0.0.1:1/"})
	if c.Has(hooks.Publish) || !c.Has(hooks.Connect) {
		t.Error("Has is wrong")
	}
	if _, err := c.Publish(context.Background(), &hooks.PublishRequest{}); !errors.Is(err, hooks.ErrNoHook) {
		t.Errorf("error %v, want ErrNoHook", err)
	}
}

func TestConcurrencyBound(t *testing.T) {
	const limit = 3
	var inFlight, peak atomic.Int32
	release := make(chan struct{})
	url := app(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		inFlight.Add(-1)
		answer(`{"allow":true}`)(w, r)
	})
	c := newClient(t, hooks.Config{SubscribeURL: url, Concurrency: limit, SubscribeTimeout: 10 * time.Second})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Subscribe(context.Background(), &hooks.SubscribeRequest{Stream: "s"})
			errs <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for inFlight.Load() < limit && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a call over the bound would arrive now
	if p := peak.Load(); p != limit {
		t.Errorf("peak calls in flight = %d, want %d", p, limit)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if p := peak.Load(); p > limit {
		t.Errorf("peak calls in flight = %d, over the bound %d", p, limit)
	}
}

func TestWaitForSlotTimesOut(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	url := app(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c := newClient(t, hooks.Config{SubscribeURL: url, PublishURL: url, Concurrency: 1, SubscribeTimeout: 5 * time.Second, PublishTimeout: 50 * time.Millisecond})
	go func() { _, _ = c.Subscribe(context.Background(), &hooks.SubscribeRequest{Stream: "s"}) }()
	time.Sleep(50 * time.Millisecond)
	_, err := c.Publish(context.Background(), &hooks.PublishRequest{Stream: "s", Data: json.RawMessage(`1`)})
	if !errors.Is(err, hooks.ErrUnavailable) || !strings.Contains(err.Error(), "slot") {
		t.Fatalf("error %v, want ErrUnavailable waiting for a slot", err)
	}
}

func TestCollectHeaders(t *testing.T) {
	c := newClient(t, hooks.Config{ConnectURL: "http://a/", Headers: []string{"cookie", "x-*", "Authorization"}})
	h := http.Header{}
	h.Add("Cookie", "a=1")
	h.Add("Cookie", "b=2")
	h.Add("X-Forwarded-For", "203.0.113.7")
	h.Add("X-Request-Id", "r1")
	h.Add("Authorization", "Bearer t")
	h.Add("User-Agent", "test")
	got := c.CollectHeaders(h)
	want := map[string]string{"cookie": "a=1; b=2", "x-forwarded-for": "203.0.113.7", "x-request-id": "r1", "authorization": "Bearer t"}
	if len(got) != len(want) {
		t.Errorf("CollectHeaders = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("CollectHeaders[%q] = %q, want %q", k, got[k], v)
		}
	}
	if hs := c.Headers(); strings.Join(hs, ",") != "Cookie,X-*,Authorization" {
		t.Errorf("Headers = %v", hs)
	}
	none := newClient(t, hooks.Config{ConnectURL: "http://a/", Headers: []string{}})
	if got := none.CollectHeaders(h); got != nil {
		t.Errorf("empty list: CollectHeaders = %v", got)
	}
}
