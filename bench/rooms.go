package bench

import (
	"context"
	"fmt"
	"math"
	"time"
)

// RoomsConfig is the rooms scenario: Rooms streams of Group subscribers
// each, every subscriber also publishing to its room. The publish rate
// ramps up step by step, with a p99 per step, until the p99 passes SLO:
// the figure is the deliveries per second of the last step within it.
type RoomsConfig struct {
	Rooms   int           // default 1,000
	Group   int           // subscribers per room; default 10
	Size    int           // payload bytes; default 100
	Rates   []float64     // publications per second of each step; empty ramps from Start by Factor up to MaxRate
	Start   float64       // default 500
	Factor  float64       // default 1.5
	MaxRate float64       // default 50,000
	Step    time.Duration // measured time per step; default 5s
	Warmup  time.Duration // unmeasured time at the start of each step; default 1s
	SLO     time.Duration // p99 bound; default 100ms
	// All runs every step even past the SLO.
	All bool
	// Drain is the wait for deliveries after the last step; default 2s.
	Drain time.Duration
}

func (c *RoomsConfig) defaults() {
	c.Rooms = def(c.Rooms, 1000)
	c.Group = def(c.Group, 10)
	c.Size = def(c.Size, 100)
	c.Start = def(c.Start, 500)
	c.Factor = def(c.Factor, 1.5)
	c.MaxRate = def(c.MaxRate, 50000)
	c.Step = def(c.Step, 5*time.Second)
	c.Warmup = def(c.Warmup, time.Second)
	c.SLO = def(c.SLO, 100*time.Millisecond)
	c.Drain = def(c.Drain, 2*time.Second)
	if len(c.Rates) == 0 {
		for r := c.Start; r <= c.MaxRate && len(c.Rates) < 100; r *= max(c.Factor, 1.01) {
			c.Rates = append(c.Rates, math.Round(r))
		}
	}
}

// ServerArgs lift the per-connection message rate over the highest step's
// share of one client.
func (c RoomsConfig) ServerArgs() []string {
	c.defaults()
	top := 0.0
	for _, r := range c.Rates {
		top = max(top, r)
	}
	return messageRateArgs(top / float64(c.Rooms*c.Group))
}

// RoomsStep is one step of the ramp.
type RoomsStep struct {
	Offered       float64 `json:"offered_pubs_per_second"`
	Sent          float64 `json:"sent_pubs_per_second"`
	Deliveries    float64 `json:"deliveries_per_second"`
	DeliveryRatio float64 `json:"delivery_ratio"` // deliveries / (publications × group)
	Unsent        int64   `json:"unsent"`         // publications the clients could not send in time
	Latency       Latency `json:"latency"`        // every delivery
	WithinSLO     bool    `json:"within_slo"`
	Usage         Usage   `json:"usage"`
}

// RoomsResult is the rooms scenario's outcome.
type RoomsResult struct {
	Common
	Rooms    int         `json:"rooms"`
	Group    int         `json:"group"`
	Size     int         `json:"size_bytes"`
	SLOms    float64     `json:"slo_p99_ms"`
	Steps    []RoomsStep `json:"steps"`
	BestPubs float64     `json:"max_pubs_per_second_within_slo"`
	Best     float64     `json:"max_deliveries_per_second_within_slo"`
	// Totals over the whole ramp, after a drain.
	Sent      int64 `json:"sent"`
	Delivered int64 `json:"delivered"`
	Missing   int64 `json:"missing_deliveries"`
}

// Table implements Result.
func (r *RoomsResult) Table() ([]string, [][]string) {
	cols := []string{"scenario", "rooms", "group", "pubs/s offered", "pubs/s sent", "deliv/s", "ratio", "p50 ms", "p99 ms", "max ms", "p99<=SLO", "srv cpu", "srv RSS", "cli cpu"}
	var rows [][]string
	for _, s := range r.Steps {
		rows = append(rows, []string{r.Scenario, fmt.Sprint(r.Rooms), fmt.Sprint(r.Group), fRate(s.Offered), fRate(s.Sent),
			fRate(s.Deliveries), fmt.Sprintf("%.3f", s.DeliveryRatio), fMS(s.Latency.P50ms), fMS(s.Latency.P99ms), fMS(s.Latency.Maxms),
			fmt.Sprint(s.WithinSLO), fCPU(s.Usage), fRSS(s.Usage), fCli(s.Usage)})
	}
	return cols, rows
}

// RunRooms runs the rooms ramp.
func RunRooms(ctx context.Context, e *Env, c RoomsConfig) (*RoomsResult, error) {
	c.defaults()
	n := c.Rooms * c.Group
	r, err := e.start(ctx, "rooms", n, Shape{Group: c.Group, Size: c.Size})
	if err != nil {
		return nil, err
	}
	defer r.close()
	if _, err := r.ready(ctx, n); err != nil {
		return nil, err
	}
	res := &RoomsResult{Rooms: c.Rooms, Group: c.Group, Size: max(c.Size, StampSize), SLOms: durMS(c.SLO)}
	r.markCounters(ctx)
	start := r.sample()
	prev := Counters{}
	r.profile(ctx, time.Duration(len(c.Rates))*(c.Step+c.Warmup))
	for _, rate := range c.Rates {
		r.setLabel(fmt.Sprintf("%.0f pubs/s", rate))
		if err := r.pool.setRates(r.shares(rate, nil)); err != nil {
			return nil, err
		}
		if err := sleep(ctx, c.Warmup); err != nil {
			return nil, err
		}
		w, err := r.pool.collect(ctx, false)
		if err != nil {
			return nil, err
		}
		a := r.sample()
		if err := sleep(ctx, c.Step); err != nil {
			return nil, err
		}
		st, err := r.pool.collect(ctx, false)
		if err != nil {
			return nil, err
		}
		b := r.sample()
		u := b.since(a)
		prev = w.Counters
		step := RoomsStep{Offered: rate, Latency: st.Lat.Summary(), Usage: u, Unsent: st.Unsent - prev.Unsent}
		if u.Seconds > 0 {
			step.Sent = round3(float64(st.Sent-prev.Sent) / u.Seconds)
			step.Deliveries = round3(float64(st.Recv-prev.Recv) / u.Seconds)
		}
		if sent := float64(st.Sent-prev.Sent) * float64(c.Group); sent > 0 {
			step.DeliveryRatio = round3(float64(st.Recv-prev.Recv) / sent)
		}
		step.WithinSLO = st.Lat.Count() > 0 && time.Duration(st.Lat.Percentile(99)) <= c.SLO
		res.Steps = append(res.Steps, step)
		if step.WithinSLO {
			if step.Deliveries > res.Best {
				res.Best, res.BestPubs = step.Deliveries, step.Sent
			}
		} else if !c.All {
			break
		}
	}
	if err := r.pool.setRates(r.shares(0, nil)); err != nil {
		return nil, err
	}
	r.setLabel("drain")
	if err := sleep(ctx, c.Drain); err != nil {
		return nil, err
	}
	end := r.sample()
	st, err := r.pool.collect(ctx, false)
	if err != nil {
		return nil, err
	}
	res.Sent, res.Delivered = st.Sent, st.Recv
	res.Missing = max(st.Sent*int64(c.Group)-st.Recv, 0)
	if n := sumCodes(st.Closes); n > 0 {
		r.notef("%d clients were disconnected (codes %v)", n, st.Closes)
	}
	if len(st.Codes) > 0 {
		r.notef("error replies by code: %v", st.Codes)
	}
	if res.Best == 0 {
		r.notef("no step kept p99 within %v", c.SLO)
	}
	res.Common = r.common(end.since(start), r.counterDelta(ctx))
	return res, nil
}

// shares splits a total send rate over the workers by how many senders
// each holds; isSender nil counts every client.
func (r *run) shares(total float64, isSender func(i int) bool) []float64 {
	counts := make([]int, len(r.pool.workers))
	all := 0
	for w, pw := range r.pool.workers {
		for i := pw.task.First; i < pw.task.First+pw.task.Count; i++ {
			if isSender == nil || isSender(i) {
				counts[w]++
			}
		}
		all += counts[w]
	}
	out := make([]float64, len(counts))
	for w, n := range counts {
		if all > 0 {
			out[w] = total * float64(n) / float64(all)
		}
	}
	return out
}
