package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/webhooks"
)

var secret = []byte("webhook-test-secret")

// receiver is a real HTTP endpoint on 127.0.0.1 that checks every
// request's signature and records the batches; answer decides the status
// of each attempt (nil: 204).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	answer func(w http.ResponseWriter, r *http.Request, n int) bool // false: already answered

	mu       sync.Mutex
	requests int
	batches  [][]webhooks.Event
	attempts []string
}

func newReceiver(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int) bool) *receiver {
	rc := &receiver{t: t, answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	rc.mu.Lock()
	rc.requests++
	n := rc.requests
	rc.mu.Unlock()
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		rc.t.Errorf("request %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
	}
	if err := webhooks.Verify(secret, r.Header.Get(webhooks.HeaderTimestamp), r.Header.Get(webhooks.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		rc.t.Errorf("request %d: %v", n, err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if rc.answer != nil && !rc.answer(w, r, n) {
		return
	}
	var p struct{ Events []webhooks.Event }
	if err := json.Unmarshal(body, &p); err != nil {
		rc.t.Errorf("body %s: %v", body, err)
	}
	rc.mu.Lock()
	rc.batches = append(rc.batches, p.Events)
	rc.attempts = append(rc.attempts, r.Header.Get(webhooks.HeaderAttempt))
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// events returns every event accepted so far, in order.
func (rc *receiver) events() []webhooks.Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var all []webhooks.Event
	for _, b := range rc.batches {
		all = append(all, b...)
	}
	return all
}

func (rc *receiver) waitEvents(n int, within time.Duration) []webhooks.Event {
	rc.t.Helper()
	end := time.Now().Add(within)
	for {
		ev := rc.events()
		if len(ev) >= n || time.Now().After(end) {
			if len(ev) < n {
				rc.t.Fatalf("received %d events, want %d", len(ev), n)
			}
			return ev
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newSender(t *testing.T, cfg webhooks.Config) *webhooks.Sender {
	t.Helper()
	cfg.Secret = secret
	cfg.Node = "n1"
	s, err := webhooks.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func endpoints(urls ...string) []webhooks.Endpoint {
	var eps []webhooks.Endpoint
	for _, u := range urls {
		eps = append(eps, webhooks.Endpoint{URL: u})
	}
	return eps
}

func join(i int) webhooks.Event {
	return webhooks.Event{Type: webhooks.PresenceJoin, Stream: "doc", User: "u" + strconv.Itoa(i), Client: "c" + strconv.Itoa(i)}
}

func TestSender_BatchesSignedInOrder(t *testing.T) {
	rc := newReceiver(t, nil)
	s := newSender(t, webhooks.Config{Endpoints: endpoints(rc.srv.URL), BatchSize: 100, BatchWait: 50 * time.Millisecond})
	const n = 250
	for i := range n {
		s.Emit(join(i))
	}
	got := rc.waitEvents(n, 5*time.Second)
	ids := map[string]bool{}
	for i, ev := range got {
		if ev.User != "u"+strconv.Itoa(i) || ev.Type != webhooks.PresenceJoin || ev.Node != "n1" || ev.Time == 0 {
			t.Fatalf("event %d = %+v, want u%d's join from n1, in order", i, ev, i)
		}
		if ev.ID == "" || ids[ev.ID] {
			t.Fatalf("event %d id %q empty or repeated", i, ev.ID)
		}
		ids[ev.ID] = true
	}
	rc.mu.Lock()
	for _, b := range rc.batches {
		if len(b) > 100 {
			t.Errorf("batch of %d events, want at most 100", len(b))
		}
	}
	if len(rc.batches) > 5 {
		t.Errorf("%d requests for %d events emitted at once, want them batched", len(rc.batches), n)
	}
	rc.mu.Unlock()
	// One more event alone goes out after the batch wait, not before.
	start := time.Now()
	s.Emit(join(n))
	rc.waitEvents(n+1, 5*time.Second)
	if el := time.Since(start); el < 40*time.Millisecond {
		t.Errorf("a lone event went out after %v, want it to wait ~50ms for more", el)
	}
	waitStats(t, s, func(st webhooks.Stats) bool { return st.Sent == n+1 })
	if st := s.Stats(); st.Sent != n+1 || st.Dropped+st.Failed+st.Expired != 0 {
		t.Errorf("stats %+v, want %d sent and nothing else", st, n+1)
	}
}

func TestSender_SlowEndpointTimesOutThenRetries(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n == 1 {
			select { // slower than the timeout
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
			return false
		}
		return true
	})
	s := newSender(t, webhooks.Config{Endpoints: endpoints(rc.srv.URL), Timeout: 200 * time.Millisecond, RetryMin: 20 * time.Millisecond, BatchWait: time.Millisecond})
	start := time.Now()
	s.Emit(join(1))
	got := rc.waitEvents(1, 5*time.Second)
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Errorf("delivered after %v: the timeout did not cut the slow attempt", el)
	}
	rc.mu.Lock()
	if rc.attempts[0] != "2" || got[0].User != "u1" {
		t.Errorf("accepted attempt %s of %+v, want attempt 2", rc.attempts[0], got[0])
	}
	rc.mu.Unlock()
	waitStats(t, s, func(st webhooks.Stats) bool { return st.Sent == 1 })
	if st := s.Stats(); st.Retries != 1 || st.Sent != 1 {
		t.Errorf("stats %+v, want 1 retry, 1 sent", st)
	}
}

func TestSender_DownEndpointComesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused until the receiver starts below
	s := newSender(t, webhooks.Config{Endpoints: endpoints("http://" + addr + "/hooks"), RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, BatchWait: time.Millisecond})
	for i := range 3 {
		s.Emit(join(i))
	}
	time.Sleep(400 * time.Millisecond)
	if st := s.Stats(); st.Retries < 2 || st.Sent != 0 {
		t.Fatalf("stats while down %+v, want retries and nothing sent", st)
	}
	rc := &receiver{t: t}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	if rc.srv.Listener, err = net.Listen("tcp", addr); err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	rc.srv.Start()
	defer rc.srv.Close()
	got := rc.waitEvents(3, 5*time.Second)
	for i, ev := range got[:3] {
		if ev.User != "u"+strconv.Itoa(i) {
			t.Fatalf("event %d %+v, want u%d", i, ev, i)
		}
	}
}

func TestSender_Statuses(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int // answers of the attempts, then 204
		sent     int64
		failed   int64
		requests int
	}{
		{"500s with garbage, then accepted", []int{500, 502}, 1, 0, 3},
		{"408 and 429 are retried", []int{408, 429}, 1, 0, 3},
		{"400 is not retried", []int{400}, 0, 1, 1},
		{"401 is not retried", []int{401}, 0, 1, 1},
		{"a redirect is not followed", []int{302}, 0, 1, 1},
		{"any 2xx is success", []int{202}, 1, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) bool {
				if n <= len(tt.statuses) {
					if code := tt.statuses[n-1]; code != 204 {
						if code == 302 {
							w.Header().Set("Location", "/elsewhere")
						}
						w.WriteHeader(code)
						fmt.Fprint(w, "<html>\x00\xffnot json")
						return false
					}
				}
				return true
			})
			s := newSender(t, webhooks.Config{Endpoints: endpoints(rc.srv.URL), RetryMin: 10 * time.Millisecond, BatchWait: time.Millisecond})
			s.Emit(join(1))
			end := time.Now().Add(5 * time.Second)
			for st := s.Stats(); st.Sent+st.Failed == 0 && time.Now().Before(end); st = s.Stats() {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond) // no more attempts come
			st := s.Stats()
			rc.mu.Lock()
			defer rc.mu.Unlock()
			if st.Sent != tt.sent || st.Failed != tt.failed || rc.requests != tt.requests {
				t.Fatalf("stats %+v after %d requests, want sent %d failed %d after %d", st, rc.requests, tt.sent, tt.failed, tt.requests)
			}
		})
	}
}

func TestSender_GivesUpAfterRetryFor(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		return false
	})
	s := newSender(t, webhooks.Config{Endpoints: endpoints(rc.srv.URL), RetryMin: 20 * time.Millisecond, RetryFor: 300 * time.Millisecond, BatchWait: time.Millisecond})
	s.Emit(join(1))
	s.Emit(join(2))
	end := time.Now().Add(5 * time.Second)
	for s.Stats().Expired < 2 && time.Now().Before(end) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.Expired != 2 || st.Sent != 0 || st.Retries == 0 {
		t.Fatalf("stats %+v, want the batch of 2 expired after retries", st)
	}
}

func TestSender_QueueOverflowNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) bool {
		select { // a stuck endpoint
		case <-release:
		case <-r.Context().Done():
		}
		return true
	})
	s := newSender(t, webhooks.Config{Endpoints: endpoints(rc.srv.URL), QueueSize: 10, BatchSize: 5, BatchWait: time.Millisecond, Timeout: time.Minute})
	s.Emit(join(0))
	time.Sleep(100 * time.Millisecond) // the first batch is in flight, stuck
	const n = 100000
	start := time.Now()
	for i := range n {
		s.Emit(join(i + 1))
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("%d Emits took %v: Emit must not wait for the endpoint", n, el)
	}
	st := s.Stats()
	if st.Dropped != n-10 || st.Queued != 10 {
		t.Errorf("stats %+v, want %d dropped and 10 queued", st, n-10)
	}
	close(release)
	rc.waitEvents(11, 5*time.Second)
}

func TestSender_EndpointsGetTheirEvents(t *testing.T) {
	all := newReceiver(t, nil)
	presence := newReceiver(t, nil)
	streams := newReceiver(t, nil)
	var eps []webhooks.Endpoint
	for _, spec := range []string{
		all.srv.URL,
		presence.srv.URL + "/p;events=presence.join,presence.leave",
		streams.srv.URL + "/s;events=stream.*,user.disconnected",
	} {
		ep, err := webhooks.ParseEndpoint(spec)
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, ep)
	}
	s := newSender(t, webhooks.Config{Endpoints: eps, BatchWait: time.Millisecond})
	for _, typ := range webhooks.Types {
		s.Emit(webhooks.Event{Type: typ, Stream: "doc"})
	}
	types := func(evs []webhooks.Event) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Type)
		}
		slices.Sort(out)
		return out
	}
	check := func(rc *receiver, want ...string) {
		t.Helper()
		got := types(rc.waitEvents(len(want), 5*time.Second))
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("received %q, want %q", got, want)
		}
	}
	check(all, webhooks.Types...)
	check(presence, webhooks.PresenceJoin, webhooks.PresenceLeave)
	check(streams, webhooks.StreamOccupied, webhooks.StreamVacated, webhooks.UserDisconnected)
	time.Sleep(100 * time.Millisecond)
	check(presence, webhooks.PresenceJoin, webhooks.PresenceLeave)
}

func TestSender_CloseFlushes(t *testing.T) {
	rc := newReceiver(t, nil)
	s := newSender(t, webhooks.Config{Endpoints: endpoints(rc.srv.URL), BatchWait: time.Hour})
	for i := range 5 {
		s.Emit(join(i))
	}
	start := time.Now()
	s.Close(context.Background())
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Close took %v", el)
	}
	if got := rc.events(); len(got) != 5 {
		t.Fatalf("received %d events by the end of Close, want 5", len(got))
	}
	s.Emit(join(6))
	if st := s.Stats(); st.Sent != 5 || st.Dropped != 1 {
		t.Errorf("stats %+v, want 5 sent and the Emit after Close dropped", st)
	}
}

func TestSender_CloseIsBounded(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		return false
	})
	s := newSender(t, webhooks.Config{Endpoints: endpoints(rc.srv.URL), BatchSize: 2, BatchWait: time.Millisecond, RetryMin: 50 * time.Millisecond, DrainTimeout: 300 * time.Millisecond})
	for i := range 5 {
		s.Emit(join(i))
	}
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	s.Close(context.Background())
	if el := time.Since(start); el > time.Second {
		t.Errorf("Close took %v, want about the drain timeout of 300ms", el)
	}
	if st := s.Stats(); st.Dropped != 5 || st.Queued != 0 {
		t.Errorf("stats %+v, want all 5 dropped when the drain ran out", st)
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in      string
		url     string
		events  []string
		wantErr bool
	}{
		{in: "https://app.example/hooks", url: "https://app.example/hooks"},
		{in: "https://app.example/hooks;events=presence.join,presence.leave", url: "https://app.example/hooks", events: []string{"presence.join", "presence.leave"}},
		{in: "http://127.0.0.1:9000/h;v=1;events=stream.*", url: "http://127.0.0.1:9000/h;v=1", events: []string{"stream.*"}},
		{in: "https://app.example/hooks;events=presence.jion", wantErr: true},
		{in: "https://app.example/hooks;events=", wantErr: true},
		{in: "ftp://app.example/hooks", wantErr: true},
		{in: "app.example/hooks", wantErr: true},
	}
	for _, tt := range tests {
		ep, err := webhooks.ParseEndpoint(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseEndpoint(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && (ep.URL != tt.url || !slices.Equal(ep.Events, tt.events)) {
			t.Errorf("ParseEndpoint(%q) = %+v, want %s %q", tt.in, ep, tt.url, tt.events)
		}
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"events":[]}`)
	now := time.Unix(1_700_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := webhooks.Sign(secret, ts, body)
	if err := webhooks.Verify(secret, ts, sig, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"other body":      webhooks.Verify(secret, ts, sig, []byte(`{"events":[1]}`), now, 5*time.Minute),
		"other secret":    webhooks.Verify([]byte("x"), ts, sig, body, now, 5*time.Minute),
		"old timestamp":   webhooks.Verify(secret, ts, sig, body, now.Add(10*time.Minute), 5*time.Minute),
		"moved timestamp": webhooks.Verify(secret, strconv.FormatInt(now.Unix()+1, 10), sig, body, now, 5*time.Minute),
	} {
		if err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// waitStats waits up to 5s for the sender's stats to satisfy ok.
func waitStats(t *testing.T, s *webhooks.Sender, ok func(webhooks.Stats) bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !ok(s.Stats()) && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
}
