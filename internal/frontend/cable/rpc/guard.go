package rpc

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/huddle-rt/huddle/internal/tracing"
)

// unreachable marks a failure that happened before the backend could
// answer, or an answer saying it is busy: the call did not run, and
// another try may succeed.
type unreachable struct{ err error }

func (u unreachable) Error() string { return u.err.Error() }
func (u unreachable) Unwrap() error { return u.err }

// Unreachable marks err as a failure to reach the backend at all, which
// Guard retries. Backend implementations use it for refused connections,
// resets, and answers such as HTTP 503 or gRPC UNAVAILABLE.
func Unreachable(err error) error { return unreachable{err} }

// Retryable reports whether err says the backend was not reached.
func Retryable(err error) bool {
	var u unreachable
	return errors.As(err, &u)
}

// GuardConfig configures a Guard.
type GuardConfig struct {
	// RetryFor bounds the time spent retrying one call, not counting the
	// last attempt. Default 3s, AnyCable's command timeout.
	RetryFor time.Duration
	// FirstRetry is the wait before the first retry; each next one waits
	// twice as long. Default 100ms.
	FirstRetry time.Duration
	// DownAfter is how many calls in a row must fail for the backend to be
	// down. Default 3.
	DownAfter int
	// ProbeEvery is how often a down backend is probed with a connect
	// call (any answer brings it back up). Default 2s.
	ProbeEvery time.Duration
	// Logger hears when the backend goes down and comes back. Default
	// slog.Default().
	Logger *slog.Logger
}

// Guard is a Backend that retries calls that did not reach the backend,
// with exponential backoff, and keeps the backend's health: down after
// DownAfter calls in a row got no answer, up again at the first answer.
// While down it probes the backend, so that it comes back even when no
// client calls (a load balancer that reads /readyz sends none), and does
// not retry, so that callers learn at once.
type Guard struct {
	b       Backend
	cfg     GuardConfig
	retries atomic.Int64

	mu       sync.Mutex // guards the following
	failures int        // calls in a row with no answer
	down     bool
	since    time.Time // when it went down
	lastErr  error
	probing  bool
	closed   bool
	stop     chan struct{}
}

// NewGuard guards b.
func NewGuard(b Backend, cfg GuardConfig) *Guard {
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = 3 * time.Second
	}
	if cfg.FirstRetry <= 0 {
		cfg.FirstRetry = 100 * time.Millisecond
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = 3
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Guard{b: b, cfg: cfg, stop: make(chan struct{})}
}

var _ Backend = (*Guard)(nil)

// Connect calls the backend's connect, retrying.
func (g *Guard) Connect(ctx context.Context, req *ConnectRequest) (resp *ConnectResponse, err error) {
	ctx, end := span(ctx, "anycable.rpc connect")
	defer func() { end(err) }()
	return guarded(g, ctx, func(ctx context.Context) (*ConnectResponse, error) { return g.b.Connect(ctx, req) })
}

// Command calls the backend's command, retrying.
func (g *Guard) Command(ctx context.Context, req *CommandRequest) (resp *CommandResponse, err error) {
	ctx, end := span(ctx, "anycable.rpc "+req.Command)
	defer func() { end(err) }()
	return guarded(g, ctx, func(ctx context.Context) (*CommandResponse, error) { return g.b.Command(ctx, req) })
}

// Disconnect calls the backend's disconnect, retrying.
func (g *Guard) Disconnect(ctx context.Context, req *DisconnectRequest) (resp *DisconnectResponse, err error) {
	ctx, end := span(ctx, "anycable.rpc disconnect")
	defer func() { end(err) }()
	return guarded(g, ctx, func(ctx context.Context) (*DisconnectResponse, error) { return g.b.Disconnect(ctx, req) })
}

// span starts a client span for one RPC call, its retries included; end
// records the outcome. The HTTP and gRPC clients carry its trace context
// to the application.
func span(ctx context.Context, name string) (context.Context, func(error)) {
	ctx, s := tracing.Tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
	return ctx, func(err error) {
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
}

// Backend is the guarded backend.
func (g *Guard) Backend() Backend { return g.b }

// Retries returns how many calls were made again after failing to reach
// the backend.
func (g *Guard) Retries() int64 { return g.retries.Load() }

// Health says whether the backend is down, since when, and the last
// failure.
func (g *Guard) Health() (down bool, since time.Time, lastErr error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.down, g.since, g.lastErr
}

// Close stops the probing.
func (g *Guard) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		close(g.stop)
	}
}

func guarded[R any](g *Guard, ctx context.Context, call func(context.Context) (R, error)) (R, error) {
	start := time.Now()
	wait := g.cfg.FirstRetry
	for {
		resp, err := call(ctx)
		if errors.Is(err, ErrAbandoned) {
			return resp, err // never reached the backend: no news of it
		}
		if err == nil || !errors.Is(err, ErrUnavailable) {
			g.answered()
			return resp, err
		}
		if !Retryable(err) || g.isDown() || time.Since(start)+wait > g.cfg.RetryFor {
			g.failed(err)
			return resp, err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			g.failed(err)
			return resp, err
		}
		g.retries.Add(1)
		wait *= 2
	}
}

func (g *Guard) isDown() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.down
}

// answered records an answer: the backend is up.
func (g *Guard) answered() {
	g.mu.Lock()
	was, since := g.down, g.since
	g.failures, g.down, g.lastErr = 0, false, nil
	g.mu.Unlock()
	if was {
		g.cfg.Logger.Info("the application backend answers again", "down_for", time.Since(since).Round(time.Millisecond).String())
	}
}

// failed records a call that got no answer.
func (g *Guard) failed(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failures++
	g.lastErr = err
	if !g.down && g.failures >= g.cfg.DownAfter {
		g.down, g.since = true, time.Now()
		g.cfg.Logger.Warn("the application backend is down: clients get disconnect with reconnect, /readyz answers 503; probing it", "calls_failed", g.failures, "err", err, "probe_every", g.cfg.ProbeEvery.String())
	}
	if g.down && !g.probing && !g.closed {
		g.probing = true
		go g.probe()
	}
}

// probe calls connect, with no request headers, until the backend answers
// or the guard closes.
func (g *Guard) probe() {
	t := time.NewTicker(g.cfg.ProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		g.mu.Lock()
		if !g.down { // a client's call got an answer
			g.probing = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.ProbeEvery)
		_, err := g.b.Connect(ctx, &ConnectRequest{Env: Env{URL: "huddle://readyz"}})
		cancel()
		if errors.Is(err, ErrAbandoned) {
			continue // the slots are taken: the backend answers someone
		}
		g.mu.Lock()
		if err == nil || !errors.Is(err, ErrUnavailable) {
			g.failures, g.down, g.lastErr, g.probing = 0, false, nil, false
			g.mu.Unlock()
			return
		}
		g.lastErr = err
		g.mu.Unlock()
	}
}
