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
	Welcome     Latency  `json:"welcome_latency"` // dial to the server's welcome
	Errors      []string `json:"errors,omitempty"`
	// Backend is the RPC backend's share of the storm (Env.Backend).
	Backend *BackendUsage `json:"backend,omitempty"`
}

// BackendUsage is what the RPC backend did over a storm.
type BackendUsage struct {
	Calls    RPCCounts `json:"calls"`
	PerSec   float64   `json:"calls_per_second"`
	CPU      float64   `json:"cpu_cores"` // with Measured
	RSS      int64     `json:"rss_bytes"` // at the end
	Measured bool      `json:"measured"`  // its /proc was read
	// DisconnectsAfter is the disconnect calls it had a while after the
	// clients closed, when the caller counted them (servers may pace them).
	DisconnectsAfter int64 `json:"disconnects_after_close,omitempty"`
}

// MoreTables implements moreTables: with a backend, the time to the
// welcome and the backend's calls.
func (r *ConnectResult) MoreTables() []TableData {
	b := r.Backend
	if b == nil {
		return nil
	}
	cpu, rss := "-", "-"
	if b.Measured {
		cpu, rss = fmt.Sprintf("%.2f", b.CPU), fmt.Sprintf("%.1fM", float64(b.RSS)/(1<<20))
	}
	return []TableData{{
		Cols: []string{"welcome p50 ms", "welcome p99 ms", "rpc connect", "refused", "subscribe", "rejected", "other", "bad", "calls/s", "max in flight", "tcp conns", "rpc cpu", "rpc RSS"},
		Rows: [][]string{{fMS(r.Welcome.P50ms), fMS(r.Welcome.P99ms), fInt(b.Calls.Connect), fInt(b.Calls.ConnectRefused),
			fInt(b.Calls.Subscribe), fInt(b.Calls.SubscribeRejected), fInt(b.Calls.OtherCommands), fInt(b.Calls.Bad),
			fRate(b.PerSec), fInt(b.Calls.MaxInFlight), fInt(b.Calls.TCPConns), cpu, rss}},
	}}
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
	var calls0 RPCCounts
	var proc0 ProcStats
	var procOK bool
	if be := e.Backend; be != nil {
		if calls0, err = be.Counts(ctx); err != nil {
			return nil, fmt.Errorf("bench: the RPC backend's counts: %w", err)
		}
		if be.Pid > 0 {
			proc0, err = ReadProc(be.Pid)
			procOK = err == nil
		}
	}
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
		Seconds: u.Seconds, Connect: st.Dial.Summary(), Welcome: st.Welcome.Summary(), Errors: st.Samples,
	}
	if be := e.Backend; be != nil {
		bu := &BackendUsage{}
		if procOK {
			if p, err := ReadProc(be.Pid); err == nil && u.Seconds > 0 {
				bu.Measured, bu.RSS = true, p.RSS
				bu.CPU = round3((p.CPUTime - proc0.CPUTime).Seconds() / u.Seconds)
				u.BackendCPU = bu.CPU
			}
		}
		calls, err := be.Counts(ctx)
		if err != nil {
			return nil, fmt.Errorf("bench: the RPC backend's counts: %w", err)
		}
		bu.Calls = calls.Sub(calls0)
		if u.Seconds > 0 {
			bu.PerSec = round3(float64(bu.Calls.Calls()) / u.Seconds)
		}
		res.Backend = bu
		if cores := e.ClientCores; bu.Measured && cores > 0 && u.ClientCPU+bu.CPU >= 0.85*float64(cores) {
			r.notef("clients and the RPC backend used %.2f of %d core(s) together: they may be what this run measures", u.ClientCPU+bu.CPU, cores)
		}
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
