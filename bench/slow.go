package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// SlowConfig is the slow-consumer scenario: Good and Slow subscribers of
// one stream and a publisher at Rate messages of Size bytes. First a
// Baseline phase where everyone reads, then a Slowdown phase where the slow
// ones stop reading (with a small socket receive buffer, so the server's
// queue fills). The good ones' time-to-last must not change, and the slow
// ones must be cut with 4008.
type SlowConfig struct {
	Good     int           // reading subscribers; default 200
	Slow     int           // subscribers that stop reading; default 20
	Rate     float64       // messages per second; default 200
	Size     int           // payload bytes; default 2000
	Baseline time.Duration // everyone reads; default 5s
	Slowdown time.Duration // the slow ones stop reading; default 15s
	MaxQueue int           // the server's --max-queue; default 256 KiB
	RecvBuf  int           // SO_RCVBUF of the slow clients; default 4096
	Wait     time.Duration // how long the slow ones may take to see their close; default 10s
	Drain    time.Duration // wait for deliveries after the last publish; default 2s
}

func (c *SlowConfig) defaults() {
	c.Good = def(c.Good, 200)
	c.Slow = def(c.Slow, 20)
	c.Rate = def(c.Rate, 200)
	c.Size = def(c.Size, 2000)
	c.Baseline = def(c.Baseline, 5*time.Second)
	c.Slowdown = def(c.Slowdown, 15*time.Second)
	c.MaxQueue = def(c.MaxQueue, 256<<10)
	c.RecvBuf = def(c.RecvBuf, 4096)
	c.Wait = def(c.Wait, 10*time.Second)
	c.Drain = def(c.Drain, 2*time.Second)
}

// ServerArgs set the outbound queue bound the slow ones must pass (the
// server's default, 4 MiB, takes long to fill) and lift the message rate.
func (c SlowConfig) ServerArgs() []string {
	c.defaults()
	return append([]string{"--max-queue", strconv.Itoa(c.MaxQueue)}, messageRateArgs(c.Rate)...)
}

// SlowPhase is the good subscribers' view of one phase.
type SlowPhase struct {
	Messages   int     `json:"messages"`
	Missing    int64   `json:"missing_deliveries"`
	TimeToLast Latency `json:"time_to_last"`
	Usage      Usage   `json:"usage"`
}

// SlowResult is the slow-consumer scenario's outcome. Usage covers both
// phases.
type SlowResult struct {
	Common
	Good     int       `json:"good"`
	Slow     int       `json:"slow"`
	Rate     float64   `json:"rate_per_second"`
	Size     int       `json:"size_bytes"`
	MaxQueue int       `json:"max_queue_bytes"`
	Baseline SlowPhase `json:"baseline"`
	Slowdown SlowPhase `json:"slowdown"`
	// SlowClosed is how many slow subscribers' connections ended; Cut4008
	// how many of them saw a 4008 (disconnect message or close frame);
	// SlowCloses counts them by close code (0: the socket ended without
	// one). NotCut were still connected at the end.
	SlowClosed int64         `json:"slow_closed"`
	Cut4008    int64         `json:"slow_cut_4008"`
	SlowCloses map[int]int64 `json:"slow_closes,omitempty"`
	NotCut     int64         `json:"slow_not_cut"`
	// GoodCut is how many reading subscribers were disconnected (should be
	// none), by code in GoodCloses.
	GoodCut int64 `json:"good_cut"`
	// Server4008 is how many 4008 disconnects the server counted (its
	// /metrics); -1 when not read.
	Server4008 int64         `json:"server_disconnects_4008"`
	GoodCloses map[int]int64 `json:"good_closes,omitempty"`
	// FirstCutMS and AllCutMS are the time from the slow ones' stop to the
	// server's first and last drop of their connections, seen through
	// /api/stats (needs the API key; absent if not seen).
	FirstCutMS *float64 `json:"first_cut_after_ms,omitempty"`
	AllCutMS   *float64 `json:"all_cut_after_ms,omitempty"`
}

// Table implements Result.
func (r *SlowResult) Table() ([]string, [][]string) {
	cutAfter := "-"
	if r.AllCutMS != nil {
		cutAfter = fmt.Sprintf("%.1fs", *r.AllCutMS/1000)
	}
	row := func(name string, p SlowPhase) []string {
		return []string{r.Scenario + " " + name, fmt.Sprint(r.Good), fmt.Sprint(r.Slow), fRate(r.Rate), fmt.Sprint(r.Size),
			fmt.Sprint(p.Messages), fInt(p.Missing), fInt(r.GoodCut), fMS(p.TimeToLast.P50ms), fMS(p.TimeToLast.P99ms), fMS(p.TimeToLast.Maxms),
			fInt(r.SlowClosed), fInt(r.Cut4008), cutAfter, fCPU(p.Usage), fCli(p.Usage)}
	}
	return []string{"scenario", "good", "slow", "rate/s", "bytes", "msgs", "good missing", "good cut", "last p50 ms", "last p99 ms", "last max ms", "slow closed", "with 4008", "all cut after", "srv cpu", "cli cpu"},
		[][]string{row("baseline", r.Baseline), row("slowdown", r.Slowdown)}
}

const slowStream = "bench:slow"

// RunSlow runs the slow-consumer scenario.
func RunSlow(ctx context.Context, e *Env, c SlowConfig) (*SlowResult, error) {
	c.defaults()
	n := c.Good + c.Slow
	total := int((c.Baseline+c.Slowdown).Seconds()*c.Rate) + 1
	r, err := e.start(ctx, "slow", n, Shape{Stream: slowStream, Slow: c.Slow, RecvBuf: c.RecvBuf, Seqs: total})
	if err != nil {
		return nil, err
	}
	defer r.close()
	ctr, err := r.ready(ctx, n)
	if err != nil {
		return nil, err
	}
	if ctr.Failed > 0 {
		return nil, fmt.Errorf("bench: slow: %d clients failed to connect; the phases need all", ctr.Failed)
	}
	pub, err := r.dialPublisher(ctx, slowStream, c.Size)
	if err != nil {
		return nil, err
	}
	defer pub.close()

	r.setLabel("baseline")
	r.markCounters(ctx)
	s0 := r.sample()
	base, err := pub.publish(ctx, c.Rate, c.Baseline)
	if err != nil {
		return nil, err
	}
	s1 := r.sample()
	if err := r.pool.broadcast(command{Cmd: cmdPause}); err != nil {
		return nil, err
	}
	paused := time.Now()
	r.setLabel("slow readers stopped")
	r.profile(ctx, c.Slowdown)
	wctx, stopWatch := context.WithCancel(ctx)
	cuts := make(chan [2]time.Duration, 1)
	go func() { cuts <- r.watchCuts(wctx, paused, c.Slow) }()
	slow, err := pub.publish(ctx, c.Rate, c.Slowdown)
	stopWatch()
	cut := <-cuts
	if err != nil {
		return nil, err
	}
	s2 := r.sample()
	r.setLabel("drain")
	if err := sleep(ctx, c.Drain); err != nil {
		return nil, err
	}
	// The slow ones read again: what waits in their sockets ends with the
	// server's disconnect and close frame, if it cut them.
	if err := r.pool.broadcast(command{Cmd: cmdResume}); err != nil {
		return nil, err
	}
	r.setLabel("waiting for the slow ones' close")
	deadline := time.Now().Add(c.Wait)
	for time.Now().Before(deadline) {
		pc, _, _ := r.pool.progress()
		if sumCodes(pc.SlowCloses) >= int64(c.Slow) {
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
	st, err := r.pool.collect(ctx, true)
	if err != nil {
		return nil, err
	}
	res := &SlowResult{Good: c.Good, Slow: c.Slow, Rate: c.Rate, Size: max(c.Size, StampSize), MaxQueue: c.MaxQueue}
	if cut[0] > 0 {
		v := durMS(cut[0])
		res.FirstCutMS = &v
	}
	if cut[1] > 0 {
		v := durMS(cut[1])
		res.AllCutMS = &v
	}
	res.Baseline = slowPhase(st.Seq, base, c.Good, s1.since(s0))
	res.Slowdown = slowPhase(st.Seq, slow, c.Good, s2.since(s1))
	res.SlowClosed, res.Cut4008, res.SlowCloses = sumCodes(st.SlowCloses), st.SlowCloses[4008], st.SlowCloses
	res.NotCut = max(int64(c.Slow)-res.SlowClosed, 0)
	res.GoodCut, res.GoodCloses = sumCodes(st.Closes), st.Closes
	if res.NotCut > 0 {
		r.notef("%d slow subscribers were still connected at the end: a longer -slowdown, a higher -rate or -size, or a smaller -max-queue fills their queues", res.NotCut)
	}
	if n := res.SlowClosed - res.Cut4008; n > 0 {
		r.notef("%d slow subscribers were disconnected without a 4008 reaching them (codes %v; 0 = the socket ended with no disconnect message or close frame)", n, st.SlowCloses)
	}
	if res.GoodCut > 0 {
		r.notef("%d reading subscribers were disconnected (codes %v)", res.GoodCut, st.Closes)
	}
	counters := r.counterDelta(ctx)
	res.Server4008 = -1
	if counters != nil {
		res.Server4008 = int64(counters[`huddle_disconnects_total{code="4008"}`])
	}
	if res.Server4008 > 0 && res.Cut4008 < res.Server4008 {
		r.notef("the server counted %d disconnects with 4008, %d reached their client", res.Server4008, res.Cut4008)
	}
	res.Common = r.common(s2.since(s0), counters)
	return res, nil
}

func slowPhase(t SeqTable, sent []uint64, want int, u Usage) SlowPhase {
	h, missing := t.TimeToLast(sent, want)
	return SlowPhase{Messages: len(sent), Missing: missing, TimeToLast: h.Summary(), Usage: u}
}

// watchCuts polls the server's connection count until n connections are
// gone and returns when the first and the n-th went, after since; zero
// when not seen (no API key, or not cut in time).
func (r *run) watchCuts(ctx context.Context, since time.Time, n int) (out [2]time.Duration) {
	base, err := r.env.Target.Stats(ctx)
	if err != nil {
		return out
	}
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-tk.C:
		}
		st, err := r.env.Target.Stats(ctx)
		if err != nil {
			continue
		}
		gone := base.Connections - st.Connections
		if gone > 0 && out[0] == 0 {
			out[0] = time.Since(since)
		}
		if gone >= int64(n) {
			out[1] = time.Since(since)
			return out
		}
	}
}
