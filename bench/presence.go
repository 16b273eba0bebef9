package bench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"
)

// PresenceConfig is presence churn: Streams streams of Members present
// members each (of which Watchers receive presence diffs), and churning
// clients that join and leave at Rate cycles a second in all, each staying
// Hold. The figures are the time from a join or leave to its visibility at
// the watchers, and the server's RSS before and after the churn.
type PresenceConfig struct {
	Streams  int           // default 1
	Members  int           // static members per stream; default 10,000
	Watchers int           // members per stream that receive presence; default all
	Rate     float64       // join+leave cycles per second, all streams; default 200
	Hold     time.Duration // how long a churner stays; default 1s
	Churners int           // churning clients per stream; default enough for Rate and Hold
	Duration time.Duration // churn time; default 20s
	Settle   time.Duration // wait before and after the churn; default 3s
}

func (c *PresenceConfig) defaults() {
	c.Streams = def(c.Streams, 1)
	c.Members = def(c.Members, 10000)
	if c.Watchers <= 0 || c.Watchers > c.Members {
		c.Watchers = c.Members
	}
	c.Rate = def(c.Rate, 200)
	c.Hold = def(c.Hold, time.Second)
	if c.Churners <= 0 {
		// Each is busy for Hold plus a rest.
		cycle := c.Hold + max(c.Hold/2, 100*time.Millisecond)
		// Twice that: under load, leaves and rests run late.
		c.Churners = int(math.Ceil(c.Rate/float64(c.Streams)*cycle.Seconds()*2)) + 10
	}
	c.Duration = def(c.Duration, 20*time.Second)
	c.Settle = def(c.Settle, 3*time.Second)
}

// ServerArgs raise the presence member limit (default 10,000) over members
// plus churners.
func (c PresenceConfig) ServerArgs() []string {
	c.defaults()
	return []string{"--max-presence-members", strconv.Itoa(c.Members + c.Churners + 100)}
}

// PresenceResult is presence churn's outcome. Usage covers the churn.
type PresenceResult struct {
	Common
	Streams  int     `json:"streams"`
	Members  int     `json:"members_per_stream"`
	Watchers int     `json:"watchers_per_stream"`
	Churners int     `json:"churners_per_stream"`
	Rate     float64 `json:"cycles_per_second"` // each a join and a leave
	HoldMS   float64 `json:"hold_ms"`
	Cycles   int64   `json:"cycles"`
	Unsent   int64   `json:"unsent"` // cycles skipped: no churner free
	// Join and Leave are every watcher's delivery; JoinLast and LeaveLast
	// each event's time to its last watcher.
	Join      Latency `json:"join"`
	Leave     Latency `json:"leave"`
	JoinLast  Latency `json:"join_time_to_last"`
	LeaveLast Latency `json:"leave_time_to_last"`
	Missing   int64   `json:"missing_deliveries"`
	Unmatched int64   `json:"unmatched_leaves"`
	// RSS of the server before the churn, right after it, and after it
	// settled; with its presence counts to show nothing stayed behind.
	RSSBefore     int64 `json:"rss_before_bytes"`
	RSSAfter      int64 `json:"rss_after_bytes"`
	RSSSettled    int64 `json:"rss_settled_bytes"`
	PresentBefore int   `json:"present_before"`
	PresentAfter  int   `json:"present_after"`
}

// Table implements Result.
func (r *PresenceResult) Table() ([]string, [][]string) {
	rss := func(b int64) string { return fmt.Sprintf("%.1fM", float64(b)/(1<<20)) }
	return []string{"scenario", "streams", "members", "watchers", "cycles/s", "cycles", "join p50", "join p99", "leave p50", "leave p99", "last p99 j/l", "missing", "RSS before", "after", "settled", "srv cpu", "cli cpu"},
		[][]string{{r.Scenario, fmt.Sprint(r.Streams), fmt.Sprint(r.Members), fmt.Sprint(r.Watchers), fRate(r.Rate), fInt(r.Cycles),
			fMS(r.Join.P50ms), fMS(r.Join.P99ms), fMS(r.Leave.P50ms), fMS(r.Leave.P99ms),
			fMS(r.JoinLast.P99ms) + "/" + fMS(r.LeaveLast.P99ms), fInt(r.Missing),
			rss(r.RSSBefore), rss(r.RSSAfter), rss(r.RSSSettled), fCPU(r.Usage), fCli(r.Usage)}}
}

// RunPresence runs presence churn.
func RunPresence(ctx context.Context, e *Env, c PresenceConfig) (*PresenceResult, error) {
	c.defaults()
	members := c.Streams * c.Members
	n := members + c.Streams*c.Churners
	nw := e.workers(n)
	// Room in the sequence table for each worker's cycles at its share of
	// the rate (a worker may hold every churner).
	perWorker := int(c.Rate*c.Duration.Seconds()*1.2) + 100
	shape := Shape{
		Streams: c.Streams, Members: c.Members, Churners: c.Churners, Watch: true,
		Hold: c.Hold, Size: StampSize, Seqs: 2 * nw * perWorker,
	}
	shape.Watchers = c.Watchers
	r, err := e.start(ctx, "presence", n, shape)
	if err != nil {
		return nil, err
	}
	defer r.close()
	if _, err := r.ready(ctx, n); err != nil {
		return nil, err
	}
	r.setLabel("settling")
	if err := sleep(ctx, c.Settle); err != nil {
		return nil, err
	}
	res := &PresenceResult{Streams: c.Streams, Members: c.Members, Watchers: c.Watchers, Churners: c.Churners,
		Rate: c.Rate, HoldMS: durMS(c.Hold)}
	res.PresentBefore = r.present(ctx, c.Streams)
	if _, err := r.pool.collect(ctx, false); err != nil { // drop the setup's joins
		return nil, err
	}
	r.markCounters(ctx)
	a := r.sample()
	r.setLabel(fmt.Sprintf("%.0f cycles/s", c.Rate))
	r.profile(ctx, c.Duration)
	isChurner := func(i int) bool { return i >= members }
	if err := r.pool.setRates(r.shares(c.Rate, isChurner)); err != nil {
		return nil, err
	}
	if err := sleep(ctx, c.Duration); err != nil {
		return nil, err
	}
	if err := r.pool.setRates(r.shares(0, isChurner)); err != nil {
		return nil, err
	}
	b := r.sample()
	r.setLabel("last leaves, settling")
	if err := sleep(ctx, c.Hold+max(c.Hold/2, 100*time.Millisecond)+c.Settle); err != nil {
		return nil, err
	}
	settled := r.sample()
	res.PresentAfter = r.present(ctx, c.Streams)
	rs, err := r.pool.collectReports(ctx, true)
	if err != nil {
		return nil, err
	}
	st := merge(rs)
	res.Cycles, res.Unsent, res.Unmatched = st.Cycles, st.Unsent, st.Unmatched
	res.Join, res.Leave = st.Join.Summary(), st.Leave.Summary()
	// The joins and leaves sent: worker w's k-th cycle has sequence numbers
	// 2(kW+w) and one more.
	var joins, leaves []uint64
	for w, rep := range rs {
		for k := int64(0); k < rep.Counters.Cycles; k++ {
			seq := uint64(2 * (k*int64(len(rs)) + int64(w)))
			joins, leaves = append(joins, seq), append(leaves, seq+1)
		}
	}
	jh, jm := st.Seq.TimeToLast(joins, c.Watchers)
	lh, lm := st.Seq.TimeToLast(leaves, c.Watchers)
	res.JoinLast, res.LeaveLast, res.Missing = jh.Summary(), lh.Summary(), jm+lm
	if a.serverOK && b.serverOK && settled.serverOK {
		res.RSSBefore, res.RSSAfter, res.RSSSettled = a.server.RSS, b.server.RSS, settled.server.RSS
	}
	if res.PresentAfter != res.PresentBefore && res.PresentBefore >= 0 {
		r.notef("presence held %d connections before the churn and %d after", res.PresentBefore, res.PresentAfter)
	}
	if res.Unsent > 0 {
		r.notef("%d cycles were skipped because no churner was free: raise -churners", res.Unsent)
	}
	if st.Overflow > 0 {
		r.notef("%d receipts fell outside the sequence table", st.Overflow)
	}
	if n := sumCodes(st.Closes); n > 0 {
		r.notef("%d clients were disconnected (codes %v)", n, st.Closes)
	}
	if len(st.Codes) > 0 {
		r.notef("error replies by code: %v", st.Codes)
	}
	res.Common = r.common(b.since(a), r.counterDelta(ctx))
	return res, nil
}

// present counts the connections present in the scenario's streams through
// the HTTP API, or returns -1 without it.
func (r *run) present(ctx context.Context, streams int) int {
	total := 0
	for s := 0; s < streams; s++ {
		n, err := r.env.Target.PresenceClients(ctx, presenceStream(s))
		if err != nil {
			return -1
		}
		total += n
	}
	return total
}
