package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// BroadcastConfig is the broadcast scenario: N subscribers of one stream,
// one publisher (in the coordinator) at Rate messages a second of Size
// bytes for Duration. The figure is each message's time to its LAST
// subscriber.
type BroadcastConfig struct {
	N        int           // subscribers; default 1,000
	Rate     float64       // messages per second; default 10
	Duration time.Duration // how long to publish; default 10s
	Size     int           // payload bytes (at least 24); default 100
	Drain    time.Duration // wait for deliveries after the last publish; default 2s
	// Warmup publishes at Rate for this long before the measured phase;
	// its messages are not in the figures. Default 2s; negative: none.
	Warmup time.Duration
}

func (c *BroadcastConfig) defaults() {
	c.N = def(c.N, 1000)
	c.Rate = def(c.Rate, 10)
	c.Duration = def(c.Duration, 10*time.Second)
	c.Size = def(c.Size, 100)
	c.Drain = def(c.Drain, 2*time.Second)
	c.Warmup = def(c.Warmup, 2*time.Second)
}

// ServerArgs lift the per-connection message rate above the publisher's.
func (c BroadcastConfig) ServerArgs() []string {
	c.defaults()
	return messageRateArgs(c.Rate)
}

// messageRateArgs lifts --message-rate (default 1000/s) over rate.
func messageRateArgs(rate float64) []string {
	if rate*1.5 < 1000 {
		return nil
	}
	return []string{"--message-rate", strconv.Itoa(int(rate*2 + 100))}
}

// BroadcastResult is the broadcast scenario's outcome. Usage and
// Deliveries cover the publishing (not the drain after it).
type BroadcastResult struct {
	Common
	Subscribers int     `json:"subscribers"`
	Rate        float64 `json:"rate_per_second"`
	Size        int     `json:"size_bytes"`
	Messages    int     `json:"messages"`
	Missing     int64   `json:"missing_deliveries"`
	P50ms       float64 `json:"time_to_last_p50_ms"`
	P99ms       float64 `json:"time_to_last_p99_ms"`
	Maxms       float64 `json:"time_to_last_max_ms"`
	TimeToLast  Latency `json:"time_to_last"`
	Delivery    Latency `json:"delivery"` // every delivery's latency
	Deliveries  float64 `json:"deliveries_per_second"`
	PubErrors   int64   `json:"publisher_errors,omitempty"`
	Warmup      float64 `json:"warmup_seconds"` // published before the measured phase, not in the figures
}

// Table implements Result.
func (r *BroadcastResult) Table() ([]string, [][]string) {
	return []string{"scenario", "subs", "rate/s", "bytes", "msgs", "missing", "deliv/s", "last p50 ms", "last p99 ms", "last max ms", "each p99 ms", "srv cpu", "srv RSS", "cli cpu"},
		[][]string{{r.Scenario, fmt.Sprint(r.Subscribers), fRate(r.Rate), fmt.Sprint(r.Size), fmt.Sprint(r.Messages), fInt(r.Missing),
			fRate(r.Deliveries), fMS(r.P50ms), fMS(r.P99ms), fMS(r.Maxms), fMS(r.Delivery.P99ms), fCPU(r.Usage), fRSS(r.Usage), fCli(r.Usage)}}
}

const broadcastStream = "bench:broadcast"

// broadcastSpin is the broadcast clients' default Env.Spin: it covers the
// gaps between packets of a fan-out, so that on loopback the server's core
// does not pay to wake the client once per subscriber (19% of the server's
// samples at 10,000 subscribers), which a remote client never costs it.
const broadcastSpin = 300 * time.Microsecond

// RunBroadcast runs the broadcast scenario.
func RunBroadcast(ctx context.Context, e *Env, c BroadcastConfig) (*BroadcastResult, error) {
	c.defaults()
	total := int(c.Duration.Seconds() * c.Rate)
	warm := int(max(c.Warmup, 0).Seconds() * c.Rate)
	r, err := e.start(ctx, "broadcast", c.N, Shape{Stream: broadcastStream, Seqs: warm + total + 1, Spin: broadcastSpin})
	if err != nil {
		return nil, err
	}
	defer r.close()
	ctr, err := r.ready(ctx, c.N)
	if err != nil {
		return nil, err
	}
	pub, err := r.dialPublisher(ctx, broadcastStream, c.Size)
	if err != nil {
		return nil, err
	}
	defer pub.close()
	// The first messages after the connects meet cold caches and a
	// growing heap: warm up, then start counting (the collect drops the
	// warm-up's latencies; its deliveries are subtracted below).
	var warmRecv int64
	if warm > 0 {
		r.setLabel("warm-up")
		if _, err := pub.publish(ctx, c.Rate, c.Warmup); err != nil {
			return nil, err
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
		w, err := r.pool.collect(ctx, false)
		if err != nil {
			return nil, err
		}
		warmRecv = w.Recv
	}
	r.setLabel(fmt.Sprintf("%.0f msg/s", c.Rate))
	r.markCounters(ctx)
	a := r.sample()
	r.profile(ctx, c.Duration)
	sent, err := pub.publish(ctx, c.Rate, c.Duration)
	if err != nil {
		return nil, err
	}
	b := r.sample()
	r.setLabel("drain")
	if err := sleep(ctx, c.Drain); err != nil {
		return nil, err
	}
	st, err := r.pool.collect(ctx, true)
	if err != nil {
		return nil, err
	}
	ttl, missing := st.Seq.TimeToLast(sent, int(ctr.Up))
	s := ttl.Summary()
	u := b.since(a)
	res := &BroadcastResult{
		Subscribers: c.N, Rate: c.Rate, Size: max(c.Size, StampSize), Messages: len(sent), Missing: missing,
		P50ms: s.P50ms, P99ms: s.P99ms, Maxms: s.Maxms, TimeToLast: s, Delivery: st.Lat.Summary(),
		PubErrors: pub.errs.Load(), Warmup: max(c.Warmup, 0).Seconds(),
	}
	if u.Seconds > 0 {
		res.Deliveries = round3(float64(st.Recv-warmRecv) / u.Seconds)
	}
	if n := sumCodes(st.Closes); n > 0 {
		r.notef("%d subscribers were disconnected (codes %v)", n, st.Closes)
	}
	if res.PubErrors > 0 {
		r.notef("the publisher got %d error replies (a rate limit?)", res.PubErrors)
	}
	res.Common = r.common(u, r.counterDelta(ctx))
	return res, nil
}
