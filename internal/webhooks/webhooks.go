// Package webhooks delivers events to the application over HTTP: each
// endpoint gets batched JSON POSTs, signed with HMAC-SHA256, from a bounded
// queue of its own, retried with backoff and jitter until they are
// accepted, refused or too old.
//
// Emit never blocks and does no I/O: a full queue drops the event and
// counts it. One goroutine per endpoint sends, one batch at a time, so an
// endpoint receives its events in the order they were emitted (retries
// included) and a slow or dead endpoint delays only its own queue.
//
// The package knows nothing of where events come from (internal/server
// turns the core's into Events) nor of the other nodes (which node emits
// what is internal/webhooks/occupancy's job and the presence tracker's).
package webhooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/huddle-rt/huddle/internal/tracing"
)

// Event types.
const (
	PresenceJoin     = "presence.join"     // a member joined a stream's presence
	PresenceLeave    = "presence.leave"    // a member left it (after the grace when its connection dropped)
	StreamOccupied   = "stream.occupied"   // a stream got its first subscriber in the cluster
	StreamVacated    = "stream.vacated"    // a stream lost its last subscriber in the cluster
	UserDisconnected = "user.disconnected" // a user's last connection in the cluster closed
)

// Types lists every event type.
var Types = []string{PresenceJoin, PresenceLeave, StreamOccupied, StreamVacated, UserDisconnected}

// Headers of every request.
const (
	// HeaderSignature carries "v1=" and the hex HMAC-SHA256, keyed with
	// the secret, of the timestamp header's value, ".", and the body.
	HeaderSignature = "Huddle-Signature"
	// HeaderTimestamp is the unix time in seconds at which this attempt
	// was signed; a receiver rejects old ones to refuse replays.
	HeaderTimestamp = "Huddle-Timestamp"
	// HeaderBatch identifies the batch: the same on every attempt of it.
	HeaderBatch = "Huddle-Batch"
	// HeaderAttempt counts the attempts of the batch, from 1.
	HeaderAttempt = "Huddle-Attempt"
)

// Errors of configuration.
var (
	ErrNoSecret     = errors.New("webhooks: a secret is required")
	ErrBadEndpoint  = errors.New("webhooks: bad endpoint")
	ErrUnknownEvent = errors.New("webhooks: unknown event type")
)

// Event is one thing the application is told. The JSON names are the wire
// format (docs/webhooks.md).
type Event struct {
	// ID is unique per event, the same on every attempt: a receiver that
	// saw it already ignores it. Emit sets it.
	ID   string `json:"id"`
	Type string `json:"type"`
	// Time is when it happened, unix milliseconds. Emit sets it when 0.
	Time int64 `json:"ts"`
	// Node names the node that sent it. Emit sets it.
	Node   string `json:"node,omitempty"`
	Stream string `json:"stream,omitempty"`
	User   string `json:"user,omitempty"`
	Client string `json:"client,omitempty"`
	// Info and State are the member's token info and presence state
	// (presence.join), JSON.
	Info  json.RawMessage `json:"info,omitempty"`
	State json.RawMessage `json:"state,omitempty"`
}

// Endpoint is a URL and the event types it receives.
type Endpoint struct {
	URL string
	// Events lists the types it receives: exact names, or a family such as
	// "presence.*". Empty: every type.
	Events []string
}

// ParseEndpoint reads URL[;events=TYPE,TYPE...]: an http(s) URL, then,
// optionally, the event types it receives (see Endpoint.Events). The last
// ";events=" in s starts the list, so a URL may contain semicolons.
func ParseEndpoint(s string) (Endpoint, error) {
	raw, list, hasList := s, "", false
	if i := strings.LastIndex(s, ";events="); i >= 0 {
		raw, list, hasList = s[:i], s[i+len(";events="):], true
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Endpoint{}, fmt.Errorf("%w %q: want http(s)://host/path[;events=TYPE,...]", ErrBadEndpoint, s)
	}
	ep := Endpoint{URL: u.String()}
	if hasList {
		for _, e := range strings.Split(list, ",") {
			if e = strings.TrimSpace(e); e == "" {
				continue
			}
			if !knownPattern(e) {
				return Endpoint{}, fmt.Errorf("%w %q in %q (want %s, or a family such as presence.*)", ErrUnknownEvent, e, s, strings.Join(Types, ", "))
			}
			ep.Events = append(ep.Events, e)
		}
		if len(ep.Events) == 0 {
			return Endpoint{}, fmt.Errorf("%w %q: empty events list", ErrBadEndpoint, s)
		}
	}
	return ep, nil
}

func knownPattern(p string) bool {
	for _, t := range Types {
		if matches(p, t) {
			return true
		}
	}
	return false
}

func matches(pattern, typ string) bool {
	if fam, ok := strings.CutSuffix(pattern, ".*"); ok {
		return strings.HasPrefix(typ, fam+".")
	}
	return pattern == "*" || pattern == typ
}

// Wants reports whether the endpoint receives events of type typ.
func (e Endpoint) Wants(typ string) bool {
	if len(e.Events) == 0 {
		return true
	}
	return slices.ContainsFunc(e.Events, func(p string) bool { return matches(p, typ) })
}

// String returns the endpoint as ParseEndpoint reads it.
func (e Endpoint) String() string {
	if len(e.Events) == 0 {
		return e.URL
	}
	return e.URL + ";events=" + strings.Join(e.Events, ",")
}

// Config tunes a Sender. Zero fields take the defaults.
type Config struct {
	// Endpoints receive the events. Required.
	Endpoints []Endpoint
	// Secret keys the signatures. Required.
	Secret []byte
	// Node is set on every event (Event.Node).
	Node string
	// Timeout bounds one request, response included. Default 5s.
	Timeout time.Duration
	// BatchSize bounds the events of one request. Default 100.
	BatchSize int
	// BatchWait is how long the first event of a batch waits for more.
	// Default 100ms.
	BatchWait time.Duration
	// QueueSize bounds each endpoint's queue of events waiting to be sent;
	// beyond it events are dropped and counted. Default 10000.
	QueueSize int
	// RetryFor is how long after its first attempt a batch is still
	// retried; then it is dropped and counted as expired. Default 1m.
	RetryFor time.Duration
	// RetryMin and RetryMax bound the wait before a retry: it doubles from
	// RetryMin up to RetryMax, with jitter (a random half of it), or takes
	// a response's Retry-After up to RetryMax. Defaults 500ms and 30s.
	RetryMin, RetryMax time.Duration
	// DrainTimeout bounds Close's flush of what is queued. Default 5s.
	DrainTimeout time.Duration
	// Client sends the requests. Default: a client of its own that does
	// not follow redirects.
	Client *http.Client
	// Logger receives delivery failures and drops, at most one line per
	// kind every 10s. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 100 * time.Millisecond
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 10000
	}
	if c.RetryFor <= 0 {
		c.RetryFor = time.Minute
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 500 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 30 * time.Second
	}
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 5 * time.Second
	}
	if c.Client == nil {
		c.Client = &http.Client{
			Transport:     tracing.Transport(nil), // a span per call, and the trace context to the receiver
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Stats counts events by outcome, over all endpoints (an event sent to two
// endpoints counts twice).
type Stats struct {
	Sent    int64 // accepted with a 2xx
	Failed  int64 // refused with a status that is not retried (4xx but 408 and 429, 3xx)
	Expired int64 // still failing RetryFor after the batch's first attempt
	Dropped int64 // not queued (queue full, or emitted after Close) or left unsent when Close's drain ended
	Queued  int64 // waiting now
	Retries int64 // attempts after the first (requests, not events)
}

// Sender delivers events to its endpoints. It is safe for concurrent use.
type Sender struct {
	cfg Config
	eps []*endpoint

	sent, failed, expired, dropped, retries atomic.Int64

	draining chan struct{} // closed by Close: send what is queued, then stop
	hard     context.Context
	cancel   context.CancelFunc // ends the drain
	wg       sync.WaitGroup
	closing  sync.Once

	dropLog, failLog rateLog
}

// New starts a Sender: one goroutine per endpoint, until Close.
func New(cfg Config) (*Sender, error) {
	if len(cfg.Secret) == 0 {
		return nil, ErrNoSecret
	}
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("%w: none given", ErrBadEndpoint)
	}
	cfg.setDefaults()
	s := &Sender{cfg: cfg, draining: make(chan struct{})}
	s.hard, s.cancel = context.WithCancel(context.Background())
	s.dropLog.every, s.failLog.every = 10*time.Second, 10*time.Second
	for _, ep := range cfg.Endpoints {
		e := &endpoint{s: s, ep: ep, wake: make(chan struct{}, 1)}
		s.eps = append(s.eps, e)
		s.wg.Add(1)
		go e.run()
	}
	return s, nil
}

// Wants reports whether some endpoint receives events of type typ, so a
// caller can skip building events nobody receives.
func (s *Sender) Wants(typ string) bool {
	for _, e := range s.eps {
		if e.ep.Wants(typ) {
			return true
		}
	}
	return false
}

// Emit queues ev for every endpoint that receives its type. It never
// blocks: an endpoint whose queue is full drops it (counted, logged at a
// bounded rate).
func (s *Sender) Emit(ev Event) {
	id, err := uuid.NewV7()
	if err != nil {
		ev.ID = uuid.NewString()
	} else {
		ev.ID = id.String()
	}
	if ev.Time == 0 {
		ev.Time = time.Now().UnixMilli()
	}
	ev.Node = s.cfg.Node
	for _, e := range s.eps {
		if e.ep.Wants(ev.Type) {
			e.push(ev)
		}
	}
}

// DrainTimeout returns Config.DrainTimeout with its default applied.
func (s *Sender) DrainTimeout() time.Duration { return s.cfg.DrainTimeout }

// Stats returns the counts so far.
func (s *Sender) Stats() Stats {
	st := Stats{
		Sent:    s.sent.Load(),
		Failed:  s.failed.Load(),
		Expired: s.expired.Load(),
		Dropped: s.dropped.Load(),
		Retries: s.retries.Load(),
	}
	for _, e := range s.eps {
		e.mu.Lock()
		st.Queued += int64(len(e.q))
		e.mu.Unlock()
	}
	return st
}

// Close stops taking events and sends what is queued, without waiting for
// batches to fill, until everything is sent or DrainTimeout passes or ctx
// ends; what is left then is dropped and counted. Later Emits are dropped.
func (s *Sender) Close(ctx context.Context) {
	s.closing.Do(func() {
		for _, e := range s.eps {
			e.mu.Lock()
			e.closed = true
			e.mu.Unlock()
		}
		close(s.draining)
		t := time.AfterFunc(s.cfg.DrainTimeout, s.cancel)
		stop := context.AfterFunc(ctx, s.cancel)
		s.wg.Wait()
		t.Stop()
		stop()
		s.cancel()
	})
}

func (s *Sender) drop(n int, why string) {
	s.dropped.Add(int64(n))
	s.dropLog.log(s.cfg.Logger, slog.LevelWarn, "webhook events dropped", n, "reason", why)
}

// endpoint is one URL's queue and sender.
type endpoint struct {
	s    *Sender
	ep   Endpoint
	wake chan struct{} // a token when events were queued

	mu     sync.Mutex // guards the following
	q      []Event
	closed bool
}

func (e *endpoint) push(ev Event) {
	e.mu.Lock()
	if e.closed || len(e.q) >= e.s.cfg.QueueSize {
		closed := e.closed
		e.mu.Unlock()
		why := "queue full"
		if closed {
			why = "closed"
		}
		e.s.drop(1, why)
		return
	}
	e.q = append(e.q, ev)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// run sends batches until Close's drain is done.
func (e *endpoint) run() {
	defer e.s.wg.Done()
	for {
		batch := e.next()
		if batch == nil {
			return
		}
		e.deliver(batch)
	}
}

// next waits for a batch: BatchSize events, or whatever is queued
// BatchWait after the first, or at once while draining. Nil: drained.
func (e *endpoint) next() []Event {
	cfg := &e.s.cfg
	var timer *time.Timer
	var fire <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		e.mu.Lock()
		n, closed := len(e.q), e.closed
		if n > 0 && (n >= cfg.BatchSize || closed || fire == nil && timer != nil) {
			k := min(n, cfg.BatchSize)
			batch := slices.Clone(e.q[:k])
			clear(e.q[:k])
			e.q = e.q[k:]
			if len(e.q) == 0 {
				e.q = nil
			}
			e.mu.Unlock()
			return batch
		}
		e.mu.Unlock()
		if n == 0 && closed {
			return nil
		}
		if n > 0 && timer == nil {
			timer = time.NewTimer(cfg.BatchWait)
			fire = timer.C
		}
		select {
		case <-e.wake:
		case <-fire:
			fire = nil // the batch is due
		case <-e.s.draining:
		case <-e.s.hard.Done():
			e.dropRest()
			return nil
		}
	}
}

// dropRest drops what is queued when the drain ran out of time.
func (e *endpoint) dropRest() {
	e.mu.Lock()
	n := len(e.q)
	e.q, e.closed = nil, true
	e.mu.Unlock()
	if n > 0 {
		e.s.drop(n, "drain timed out")
	}
}

// outcome of one attempt.
type outcome int

const (
	delivered outcome = iota
	refused           // not retried
	retry
)

// deliver sends a batch until it is accepted, refused or expired.
func (e *endpoint) deliver(batch []Event) {
	s := e.s
	body, err := json.Marshal(struct {
		Events []Event `json:"events"`
	}{batch})
	if err != nil { // an Info or State that is not JSON
		s.failed.Add(int64(len(batch)))
		s.failLog.log(s.cfg.Logger, slog.LevelError, "webhook batch could not be encoded", len(batch), "url", e.ep.URL, "err", err)
		return
	}
	id := uuid.NewString()
	first := time.Now()
	for attempt := 1; ; attempt++ {
		out, wait, detail := e.post(body, id, attempt)
		switch out {
		case delivered:
			s.sent.Add(int64(len(batch)))
			return
		case refused:
			s.failed.Add(int64(len(batch)))
			s.failLog.log(s.cfg.Logger, slog.LevelWarn, "webhook batch refused; not retried", len(batch), "url", e.ep.URL, "detail", detail)
			return
		}
		backoff := s.cfg.RetryMin << min(attempt-1, 30)
		if backoff <= 0 || backoff > s.cfg.RetryMax {
			backoff = s.cfg.RetryMax
		}
		backoff = backoff/2 + randDuration(backoff/2)
		if wait > 0 {
			backoff = min(wait, s.cfg.RetryMax)
		}
		if time.Since(first)+backoff > s.cfg.RetryFor {
			s.expired.Add(int64(len(batch)))
			s.failLog.log(s.cfg.Logger, slog.LevelWarn, "webhook batch given up after retries", len(batch), "url", e.ep.URL, "attempts", attempt, "detail", detail)
			return
		}
		s.failLog.log(s.cfg.Logger, slog.LevelInfo, "webhook batch failed; retrying", len(batch), "url", e.ep.URL, "attempt", attempt, "in", backoff, "detail", detail)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.hard.Done():
			t.Stop()
			s.drop(len(batch), "drain timed out")
			e.dropRest()
			return
		}
		s.retries.Add(1)
	}
}

// post makes one attempt. wait is the response's Retry-After, if any.
func (e *endpoint) post(body []byte, batch string, attempt int) (out outcome, wait time.Duration, detail string) {
	cfg := &e.s.cfg
	ctx, cancel := context.WithTimeout(e.s.hard, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.ep.URL, bytes.NewReader(body))
	if err != nil {
		return refused, 0, err.Error()
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "huddle-webhooks")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(cfg.Secret, ts, body))
	req.Header.Set(HeaderBatch, batch)
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return retry, 0, err.Error()
	}
	drain(resp)
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return delivered, 0, ""
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return retry, retryAfter(resp.Header.Get("Retry-After")), resp.Status
	default:
		return refused, 0, resp.Status
	}
}

// Sign returns the signature header's value for a request signed at ts
// (the timestamp header's value) with body.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a request's signature header sig against ts and body, and
// that ts is within tolerance of now: what a receiver does (written in Go
// for the tests; docs/webhooks.md has it in other languages).
func Verify(secret []byte, ts, sig string, body []byte, now time.Time, tolerance time.Duration) error {
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("webhooks: bad timestamp")
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhooks: timestamp out of tolerance")
	}
	want := Sign(secret, ts, body)
	for _, s := range strings.Split(sig, ",") {
		if hmac.Equal([]byte(strings.TrimSpace(s)), []byte(want)) {
			return nil
		}
	}
	return errors.New("webhooks: bad signature")
}
