package bench

import (
	"context"
	"fmt"
	"time"
)

// IdleConfig is the idle scenario: N connections, each subscribed to one of
// Streams streams, then held; the server's RSS per connection is the
// figure.
type IdleConfig struct {
	N       int           // connections; default 10,000
	Streams int           // streams they spread over; default 100
	Settle  time.Duration // wait after connecting before reading RSS; default 3s
}

func (c *IdleConfig) defaults() {
	c.N = def(c.N, 10000)
	c.Streams = def(c.Streams, 100)
	c.Settle = def(c.Settle, 3*time.Second)
}

// ServerArgs are the server flags the scenario needs: none.
func (c IdleConfig) ServerArgs() []string { return nil }

// IdleResult is the idle scenario's outcome. Usage covers the settle
// period (the cost of idle connections: pings, timers).
type IdleResult struct {
	Common
	Connections    int     `json:"connections"`
	Failed         int64   `json:"failed"`
	Dropped        int64   `json:"dropped"` // closed by the server while idle
	BaselineRSS    int64   `json:"baseline_rss_bytes"`
	LoadedRSS      int64   `json:"loaded_rss_bytes"`
	PerConnBytes   float64 `json:"rss_per_connection_bytes"`
	ServerCPUSec   float64 `json:"server_cpu_seconds"` // spent while connecting
	ClientCPUSec   float64 `json:"client_cpu_seconds"` // spent while connecting
	ConnectSeconds float64 `json:"connect_seconds"`
	Connect        Latency `json:"connect_latency"` // dial to subscribed
}

// Table implements Result.
func (r *IdleResult) Table() ([]string, [][]string) {
	rss := func(b int64) string {
		if r.LoadedRSS == 0 {
			return "-" // no /proc readings of the server
		}
		return fmt.Sprintf("%.1fM", float64(b)/(1<<20))
	}
	perConn := "-"
	if r.LoadedRSS > 0 {
		perConn = fmt.Sprintf("%.0f B", r.PerConnBytes)
	}
	return []string{"scenario", "conns", "failed", "dropped", "base RSS", "loaded RSS", "RSS/conn", "connect s", "srv cpu s", "cli cpu s", "idle srv cpu", "idle cli cpu"},
		[][]string{{r.Scenario, fmt.Sprint(r.Connections), fInt(r.Failed), fInt(r.Dropped),
			rss(r.BaselineRSS), rss(r.LoadedRSS), perConn, fmt.Sprintf("%.2f", r.ConnectSeconds),
			fmt.Sprintf("%.2f", r.ServerCPUSec), fmt.Sprintf("%.2f", r.ClientCPUSec), fCPU(r.Usage), fCli(r.Usage)}}
}

// RunIdle runs the idle scenario.
func RunIdle(ctx context.Context, e *Env, c IdleConfig) (*IdleResult, error) {
	c.defaults()
	base := takeSample(e.Target.Pid, nil)
	r, err := e.start(ctx, "idle", c.N, Shape{Streams: c.Streams})
	if err != nil {
		return nil, err
	}
	defer r.close()
	r.markCounters(ctx)
	s0 := r.sample()
	ctr, err := r.ready(ctx, c.N)
	if err != nil {
		return nil, err
	}
	connected := r.sample()
	r.setLabel("settling")
	if err := sleep(ctx, c.Settle); err != nil {
		return nil, err
	}
	loaded := r.sample()
	st, err := r.pool.collect(ctx, false)
	if err != nil {
		return nil, err
	}
	up := connected.since(s0)
	res := &IdleResult{
		Connections: c.N, Failed: ctr.Failed, Dropped: sumCodes(st.Closes),
		ConnectSeconds: up.Seconds, ServerCPUSec: round3(up.ServerCPU * up.Seconds),
		ClientCPUSec: round3(up.ClientCPU * up.Seconds), Connect: st.Dial.Summary(),
	}
	if base.serverOK && loaded.serverOK {
		res.BaselineRSS, res.LoadedRSS = base.server.RSS, loaded.server.RSS
		if n := int64(c.N) - ctr.Failed; n > 0 {
			res.PerConnBytes = round3(float64(loaded.server.RSS-base.server.RSS) / float64(n))
		}
	}
	res.Common = r.common(loaded.since(connected), r.counterDelta(ctx))
	return res, nil
}

func def[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
