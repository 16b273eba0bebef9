package bench

import (
	"context"
	"fmt"
)

// ConnectConfig is the connect storm: N clients connect and subscribe,
// Concurrency of them in flight at once (across every worker).
type ConnectConfig struct {
	N           int // clients; default 10,000
	Concurrency int // connects in flight; default 500
	Streams     int // streams they subscribe to; default 100
}

func (c *ConnectConfig) defaults() {
	c.N = def(c.N, 10000)
	c.Concurrency = def(c.Concurrency, 500)
	c.Streams = def(c.Streams, 100)
}

// ServerArgs are the server flags the scenario needs: none.
func (c ConnectConfig) ServerArgs() []string { return nil }

// ConnectResult is the connect storm's outcome. Usage covers the storm.
type ConnectResult struct {
	Common
	Clients     int      `json:"clients"`
	Concurrency int      `json:"concurrency"`
	Connected   int64    `json:"connected"`
	Failed      int64    `json:"failed"`
	Seconds     float64  `json:"storm_seconds"`
	Rate        float64  `json:"connects_per_second"`
	Connect     Latency  `json:"connect_latency"` // dial to subscribed
	Errors      []string `json:"errors,omitempty"`
}

// Table implements Result.
func (r *ConnectResult) Table() ([]string, [][]string) {
	return []string{"scenario", "clients", "conc", "ok", "failed", "seconds", "conn/s", "p50 ms", "p99 ms", "max ms", "srv cpu", "srv RSS", "cli cpu"},
		[][]string{{r.Scenario, fmt.Sprint(r.Clients), fmt.Sprint(r.Concurrency), fInt(r.Connected), fInt(r.Failed),
			fmt.Sprintf("%.2f", r.Seconds), fRate(r.Rate), fMS(r.Connect.P50ms), fMS(r.Connect.P99ms), fMS(r.Connect.Maxms),
			fCPU(r.Usage), fRSS(r.Usage), fCli(r.Usage)}}
}

// RunConnect runs the connect storm.
func RunConnect(ctx context.Context, e *Env, c ConnectConfig) (*ConnectResult, error) {
	c.defaults()
	r, err := e.start(ctx, "connect", c.N, Shape{Streams: c.Streams, Lazy: true})
	if err != nil {
		return nil, err
	}
	defer r.close()
	if _, err := r.ready(ctx, 0); err != nil {
		return nil, err
	}
	// Spread the concurrency over the workers as the clients are.
	per := (c.Concurrency + len(r.pool.workers) - 1) / len(r.pool.workers)
	r.setLabel("storm")
	r.markCounters(ctx)
	a := r.sample()
	if err := r.pool.broadcast(command{Cmd: cmdDial, Concurrency: per}); err != nil {
		return nil, err
	}
	rs, err := r.pool.wait(ctx, evDialed)
	if err != nil {
		return nil, err
	}
	b := r.sample()
	st := merge(rs)
	u := b.since(a)
	res := &ConnectResult{
		Clients: c.N, Concurrency: per * len(r.pool.workers), Connected: st.Up, Failed: st.Failed,
		Seconds: u.Seconds, Connect: st.Dial.Summary(), Errors: st.Samples,
	}
	if u.Seconds > 0 {
		res.Rate = round3(float64(st.Up) / u.Seconds)
	}
	if st.Failed > 0 {
		r.notef("%d connects failed%s", st.Failed, joinSamples(st.Samples))
	}
	res.Common = r.common(u, r.counterDelta(ctx))
	return res, nil
}
