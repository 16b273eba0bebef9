package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// WhisperConfig is the whisper relay: Pairs streams of two clients, both
// whispering to the other, Rate whispers a second offered in all.
type WhisperConfig struct {
	Pairs    int           // default 500
	Rate     float64       // whispers per second, all senders together; default 50,000
	Duration time.Duration // default 10s
	Size     int           // whisper data bytes; default 32
	Drain    time.Duration // wait for deliveries after the last send; default 2s
}

func (c *WhisperConfig) defaults() {
	c.Pairs = def(c.Pairs, 500)
	c.Rate = def(c.Rate, 50000)
	c.Duration = def(c.Duration, 10*time.Second)
	c.Size = def(c.Size, 32)
	c.Drain = def(c.Drain, 2*time.Second)
}

// ServerArgs lift the whisper rate limit (default 60/s, burst 120 per
// connection) and the message rate over what each client sends, so that
// the run measures the relay, not the limiter.
func (c WhisperConfig) ServerArgs() []string {
	c.defaults()
	return whisperArgs(c.Rate / float64(2*c.Pairs))
}

// whisperArgs lift the per-connection whisper limits over perConn
// whispers a second.
func whisperArgs(perConn float64) []string {
	args := []string{
		"--whisper-rate", strconv.Itoa(int(perConn*2 + 10)),
		"--whisper-burst", strconv.Itoa(max(120, int(perConn*2))),
	}
	return append(args, messageRateArgs(perConn)...)
}

// RelayResult is the outcome of the whisper and cursors scenarios: paced
// whispers and their deliveries. Usage covers the sending.
type RelayResult struct {
	Common
	Streams   int     `json:"streams"`
	PerStream int     `json:"clients_per_stream"`
	Offered   float64 `json:"offered_per_second"`
	Sent      int64   `json:"sent"`
	SentRate  float64 `json:"sent_per_second"`
	Unsent    int64   `json:"unsent"` // sends the clients could not make in time
	Expected  int64   `json:"expected_deliveries"`
	Delivered int64   `json:"delivered"`
	Rate      float64 `json:"delivered_per_second"`
	Missing   int64   `json:"missing_deliveries"` // dropped, or conflated by design under load
	// Conflated and QueueFull are the server's own count (from /metrics)
	// of whispers replaced by a newer one in a receiver's queue, and of
	// whispers dropped because a receiver's queue was full; -1 unknown.
	Conflated   int64   `json:"server_conflated"`
	QueueFull   int64   `json:"server_queue_full_drops"`
	RateLimited int64   `json:"rate_limited_errors"`
	Latency     Latency `json:"latency"`
}

// Table implements Result.
func (r *RelayResult) Table() ([]string, [][]string) {
	srvCount := func(v int64) string {
		if v < 0 {
			return "-"
		}
		return fInt(v)
	}
	return []string{"scenario", "streams", "per stream", "offered/s", "sent/s", "deliv/s", "expected", "delivered", "missing", "conflated", "4006", "p50 ms", "p99 ms", "max ms", "srv cpu", "srv RSS", "cli cpu"},
		[][]string{{r.Scenario, fmt.Sprint(r.Streams), fmt.Sprint(r.PerStream), fRate(r.Offered), fRate(r.SentRate), fRate(r.Rate),
			fInt(r.Expected), fInt(r.Delivered), fInt(r.Missing), srvCount(r.Conflated), fInt(r.RateLimited),
			fMS(r.Latency.P50ms), fMS(r.Latency.P99ms), fMS(r.Latency.Maxms), fCPU(r.Usage), fRSS(r.Usage), fCli(r.Usage)}}
}

// RunWhisper runs the whisper relay.
func RunWhisper(ctx context.Context, e *Env, c WhisperConfig) (*RelayResult, error) {
	c.defaults()
	return runRelay(ctx, e, "whisper", c.Pairs, 2, c.Rate, c.Duration, c.Size, c.Drain)
}

// runRelay runs streams of perStream clients that whisper to each other at
// rate in all; each whisper should reach the stream's other clients.
func runRelay(ctx context.Context, e *Env, name string, streams, perStream int, rate float64, d time.Duration, size int, drain time.Duration) (*RelayResult, error) {
	n := streams * perStream
	r, err := e.start(ctx, name, n, Shape{Group: perStream, Size: size})
	if err != nil {
		return nil, err
	}
	defer r.close()
	if _, err := r.ready(ctx, n); err != nil {
		return nil, err
	}
	r.setLabel(fmt.Sprintf("%.0f/s", rate))
	r.markCounters(ctx)
	a := r.sample()
	r.profile(ctx, d)
	if err := r.pool.setRates(r.shares(rate, nil)); err != nil {
		return nil, err
	}
	if err := sleep(ctx, d); err != nil {
		return nil, err
	}
	if err := r.pool.setRates(r.shares(0, nil)); err != nil {
		return nil, err
	}
	b := r.sample()
	r.setLabel("drain")
	if err := sleep(ctx, drain); err != nil {
		return nil, err
	}
	st, err := r.pool.collect(ctx, false)
	if err != nil {
		return nil, err
	}
	u := b.since(a)
	res := &RelayResult{
		Streams: streams, PerStream: perStream, Offered: rate, Sent: st.Sent, Unsent: st.Unsent,
		Expected: st.Sent * int64(perStream-1), Delivered: st.Recv, RateLimited: st.Codes[4006],
		Latency: st.Lat.Summary(),
	}
	res.Missing = max(res.Expected-res.Delivered, 0)
	if u.Seconds > 0 {
		res.SentRate = round3(float64(st.Sent) / u.Seconds)
		res.Rate = round3(float64(st.Recv) / u.Seconds)
	}
	if res.RateLimited > 0 {
		r.notef("%d whispers were refused by the server's rate limit (4006): raise --whisper-rate", res.RateLimited)
	}
	if n := sumCodes(st.Closes); n > 0 {
		r.notef("%d clients were disconnected (codes %v)", n, st.Closes)
	}
	if res.Unsent > 0 {
		r.notef("%d whispers could not be sent in time: the clients fell behind", res.Unsent)
	}
	counters := r.counterDelta(ctx)
	res.Conflated, res.QueueFull = -1, -1
	if counters != nil {
		res.Conflated = int64(counters["huddle_whispers_conflated_total"])
		res.QueueFull = int64(counters[`huddle_queue_drops_total{reason="whisper_queue_full"}`])
	}
	if res.Missing > 0 && res.Conflated >= 0 {
		r.notef("the server counted %d whispers conflated (replaced by a newer one from the same sender while queued) and %d dropped on a full queue", res.Conflated, res.QueueFull)
	}
	res.Common = r.common(u, counters)
	return res, nil
}

// CursorsConfig is the cursor rooms scenario: Rooms streams of Group
// clients, each whispering its cursor at Hz to the others.
type CursorsConfig struct {
	Rooms    int           // default 50
	Group    int           // clients per room; default 20
	Hz       float64       // cursor updates per client per second; default 30
	Duration time.Duration // default 10s
	Size     int           // whisper data bytes; default 32
	Drain    time.Duration // wait for deliveries after the last send; default 2s
}

func (c *CursorsConfig) defaults() {
	c.Rooms = def(c.Rooms, 50)
	c.Group = def(c.Group, 20)
	c.Hz = def(c.Hz, 30)
	c.Duration = def(c.Duration, 10*time.Second)
	c.Size = def(c.Size, 32)
	c.Drain = def(c.Drain, 2*time.Second)
}

// ServerArgs lift the whisper limits over Hz (the default 60/s would do
// for 30 Hz, but not with scheduling jitter at higher rates).
func (c CursorsConfig) ServerArgs() []string {
	c.defaults()
	return whisperArgs(c.Hz)
}

// RunCursors runs the cursor rooms scenario.
func RunCursors(ctx context.Context, e *Env, c CursorsConfig) (*RelayResult, error) {
	c.defaults()
	return runRelay(ctx, e, "cursors", c.Rooms, c.Group, c.Hz*float64(c.Rooms*c.Group), c.Duration, c.Size, c.Drain)
}
