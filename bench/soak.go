package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SoakConfig is the soak scenario: mixed traffic at moderate rates for
// Duration, with the server's RSS and goroutine count sampled every Sample.
// The traffic, all at once:
//   - Streams streams with Rate publications a second each, read by
//     Subscribers subscribers that check every delivery (each offset exactly
//     once, in order, with the payload published there);
//   - a bulk stream of big publications (BulkRate of BulkSize bytes) read by
//     the slow readers and the first BulkSubs subscribers;
//   - a ReconnectFrac of the subscribers drop their connection about every
//     ReconnectEvery and come back (after up to Offline) with recovery;
//   - Slow readers stop reading for SlowPause about every SlowEvery: the
//     server cuts them with 4008 once their queue passes MaxQueue, and they
//     come back with recovery;
//   - WhisperGroups groups of WhisperGroup clients whispering at WhisperHz;
//   - presence churn: per presence stream, Churners connect, join, stay
//     about Hold, leave (or drop), rest about Rest, watched by Watchers.
//
// Growth compares the median of the samples in the first Window after
// Warmup with the median of those in the last Window.
type SoakConfig struct {
	Duration time.Duration // default 60s
	Warmup   time.Duration // default: the history's fill time and 10s, within a sixth to a third of Duration
	Window   time.Duration // default: a third of what follows the warm-up, at most 60s
	Sample   time.Duration // default 5s

	Streams     int     // default 4
	Rate        float64 // per stream; default 10
	Size        int     // default 200
	Subscribers int     // default 40

	BulkRate float64 // default 10; negative: no bulk stream
	BulkSize int     // default 16 KiB
	BulkSubs int     // default 6; negative: none but the slow readers

	ReconnectFrac  float64       // default 0.25; negative: none
	ReconnectEvery time.Duration // default 20s
	Offline        time.Duration // default 2s

	Slow      int           // default 2; negative: none
	SlowEvery time.Duration // default 60s
	SlowPause time.Duration // default 40s
	RecvBuf   int           // SO_RCVBUF of the slow readers; default 4096
	MaxQueue  int           // the server's --max-queue; default 256 KiB

	WhisperGroups int     // default 5; negative: none
	WhisperGroup  int     // default 4
	WhisperHz     float64 // per whisperer; default 5

	PresenceStreams int           // default 2; negative: none
	Watchers        int           // per presence stream; default 5
	Churners        int           // per presence stream; default 10
	Hold            time.Duration // default 1s
	Rest            time.Duration // default 500ms
	PresenceGrace   time.Duration // the server's --presence-grace; default 5s

	// HistorySize is the server's --history-size; default enough for the
	// longest absence (a slow reader's pause and its reconnect) at the
	// highest rate, 1.5 times over.
	HistorySize int
	// Settle is the wait after the traffic stopped and everyone caught up,
	// on top of the presence grace, before the last counts; default 2s.
	Settle time.Duration
}

// opt is v, d when v is zero, and zero when v is negative.
func opt[T int | float64](v, d T) T {
	switch {
	case v == 0:
		return d
	case v < 0:
		return 0
	}
	return v
}

func (c *SoakConfig) defaults() {
	c.Duration = def(c.Duration, 60*time.Second)
	c.Sample = def(c.Sample, 5*time.Second)
	c.Streams = def(c.Streams, 4)
	c.Rate = def(c.Rate, 10)
	c.Size = max(def(c.Size, 200), StampSize)
	c.Subscribers = def(c.Subscribers, 40)
	c.BulkRate = opt(c.BulkRate, 10)
	c.BulkSize = max(def(c.BulkSize, 16<<10), StampSize)
	c.BulkSubs = opt(c.BulkSubs, 6)
	c.ReconnectFrac = opt(c.ReconnectFrac, 0.25)
	c.ReconnectEvery = def(c.ReconnectEvery, 20*time.Second)
	c.Offline = def(c.Offline, 2*time.Second)
	c.Slow = opt(c.Slow, 2)
	c.SlowEvery = def(c.SlowEvery, 60*time.Second)
	c.SlowPause = def(c.SlowPause, 40*time.Second)
	c.RecvBuf = def(c.RecvBuf, 4096)
	c.MaxQueue = def(c.MaxQueue, 256<<10)
	c.WhisperGroups = opt(c.WhisperGroups, 5)
	c.WhisperGroup = max(def(c.WhisperGroup, 4), 2)
	c.WhisperHz = def(c.WhisperHz, 5)
	c.PresenceStreams = opt(c.PresenceStreams, 2)
	c.Watchers = max(def(c.Watchers, 5), 1)
	c.Churners = max(def(c.Churners, 10), 1)
	c.Hold = def(c.Hold, time.Second)
	c.Rest = def(c.Rest, 500*time.Millisecond)
	c.PresenceGrace = def(c.PresenceGrace, 5*time.Second)
	if c.HistorySize <= 0 {
		away := c.Offline + 10*time.Second
		if c.Slow > 0 {
			away = max(away, c.SlowPause+10*time.Second)
		}
		c.HistorySize = max(100, int(math.Ceil(max(c.Rate, c.BulkRate)*away.Seconds()*1.5)))
	}
	if c.Warmup <= 0 {
		c.Warmup = min(max(c.historyFill()+10*time.Second, c.Duration/6), c.Duration/3)
	}
	if c.Window <= 0 {
		c.Window = min((c.Duration-c.Warmup)/3, time.Minute)
	}
	c.Settle = def(c.Settle, 2*time.Second)
}

// historyFill is how long the slowest stream takes to fill its history:
// until then the server's memory grows by design.
func (c *SoakConfig) historyFill() time.Duration {
	rate := c.Rate
	if c.BulkRate > 0 {
		rate = min(rate, c.BulkRate)
	}
	return time.Duration(float64(c.HistorySize) / rate * float64(time.Second))
}

// ServerArgs serve the goroutine profile (--pprof), bound the queue the
// slow readers must pass, keep enough history for every absence, and set
// the presence grace the settle waits for.
func (c SoakConfig) ServerArgs() []string {
	c.defaults()
	args := []string{"--pprof=true", "--max-queue", strconv.Itoa(c.MaxQueue), "--history-size", strconv.Itoa(c.HistorySize),
		"--presence-grace", c.PresenceGrace.String()}
	if c.WhisperGroups > 0 && c.WhisperHz > 50 {
		args = append(args, whisperArgs(c.WhisperHz)...)
	}
	return args
}

func (c *SoakConfig) shape(prefix string) SoakShape {
	s := SoakShape{
		Prefix: prefix, Streams: c.Streams, Rate: c.Rate, Size: c.Size,
		BulkRate: c.BulkRate, BulkSize: c.BulkSize, BulkSubs: c.BulkSubs,
		Subscribers: c.Subscribers, ReconnectEvery: c.ReconnectEvery, Offline: c.Offline,
		Slow: c.Slow, SlowEvery: c.SlowEvery, SlowPause: c.SlowPause, RecvBuf: c.RecvBuf,
		WhisperGroups: c.WhisperGroups, WhisperGroup: c.WhisperGroup, WhisperHz: c.WhisperHz,
		PresenceStreams: c.PresenceStreams, Watchers: c.Watchers, Churners: c.Churners, Hold: c.Hold, Rest: c.Rest,
	}
	if c.ReconnectFrac > 0 {
		s.DropEvery = max(1, int(math.Round(1/min(c.ReconnectFrac, 1))))
	}
	return s
}

// SoakSample is the server at one time of a soak.
type SoakSample struct {
	T          float64 `json:"t_s"` // since the traffic started
	RSS        int64   `json:"rss_bytes"`
	Goroutines int     `json:"goroutines"`  // -1: unknown
	Conns      int     `json:"connections"` // the server's huddle_connections; -1: unknown
	ServerCPU  float64 `json:"server_cpu_cores"`
	ClientCPU  float64 `json:"client_cpu_cores"`
	RecvRate   float64 `json:"received_per_second"` // publications and whispers the clients received
}

// SoakResult is the soak scenario's outcome. Usage covers the traffic.
type SoakResult struct {
	Common
	DurationS   float64 `json:"duration_s"`
	WarmupS     float64 `json:"warmup_s"`
	WindowS     float64 `json:"window_s"`
	Clients     int     `json:"clients"`
	Streams     int     `json:"streams"`
	Rate        float64 `json:"rate_per_stream"`
	Subscribers int     `json:"subscribers"`
	BulkRate    float64 `json:"bulk_rate"`
	BulkSize    int     `json:"bulk_size"`
	Slow        int     `json:"slow_readers"`
	Droppers    int     `json:"dropping_subscribers"`
	HistorySize int     `json:"history_size"`
	MaxQueue    int     `json:"max_queue_bytes"`

	Samples []SoakSample `json:"samples"`
	// RSS and goroutines: before the traffic, the medians of the first
	// window after the warm-up and of the last window, growth between the
	// two in percent, and after the traffic stopped and settled.
	RSSBefore          int64   `json:"rss_before_bytes"`
	RSSFirst           int64   `json:"rss_first_window_bytes"`
	RSSLast            int64   `json:"rss_last_window_bytes"`
	RSSGrowthPct       float64 `json:"rss_growth_pct"`
	RSSSettled         int64   `json:"rss_settled_bytes"`
	GoroutinesBefore   int     `json:"goroutines_before"`
	GoroutinesFirst    float64 `json:"goroutines_first_window"`
	GoroutinesLast     float64 `json:"goroutines_last_window"`
	GoroutineGrowthPct float64 `json:"goroutines_growth_pct"`
	GoroutinesSettled  int     `json:"goroutines_settled"`
	ConnsSettled       int     `json:"connections_settled"`

	// Publications: each subscription's deliveries against the stream's
	// offsets from where it first subscribed to the final top.
	Published     int64   `json:"published"`
	Expected      int64   `json:"expected_deliveries"`
	Delivered     int64   `json:"delivered"`
	Lost          int64   `json:"lost"`
	Duplicated    int64   `json:"duplicated"`
	OutOfOrder    int64   `json:"out_of_order"`
	Mismatched    int64   `json:"mismatched"`
	RecoveredPubs int64   `json:"recovered_pubs"`
	Behind        int64   `json:"behind_at_end"`
	Latency       Latency `json:"latency"` // live deliveries (not catch-up) to the subscribers that keep reading

	Drops        int64 `json:"drops"`
	Cuts         int64 `json:"cuts"`
	Reconnects   int64 `json:"reconnects"`
	Recoveries   int64 `json:"recoveries"`
	NotRecovered int64 `json:"not_recovered"`
	EpochChanges int64 `json:"epoch_changes"`
	SlowPauses   int64 `json:"slow_pauses"`
	// Cut4008 is how many subscriber connections ended with 4008 as the
	// clients saw it; Server4008 how many 4008 disconnects the server
	// counted (/metrics; -1 unknown). A slow reader that stays paused past
	// the server's close grace never reads its 4008.
	Cut4008    int64         `json:"client_4008"`
	Server4008 int64         `json:"server_4008"`
	Closes     map[int]int64 `json:"closes,omitempty"`

	WhispersSent     int64   `json:"whispers_sent"`
	WhispersExpected int64   `json:"whispers_expected"`
	WhispersRecv     int64   `json:"whispers_delivered"`
	WhisperDisorder  int64   `json:"whispers_disorder"`
	WhisperLatency   Latency `json:"whisper_latency"`

	// Presence: every churner's join should reach every watcher of its
	// stream (JoinsExpected), and its leave after it; a join and a leave
	// that fall in one diff reach them as the leave alone (UnmatchedLeaves).
	// OpenJoins are members seen joined that never left.
	Cycles          int64 `json:"churn_cycles"`
	JoinsExpected   int64 `json:"joins_expected"`
	JoinsSeen       int64 `json:"joins_seen"`
	LeavesSeen      int64 `json:"leaves_seen"`
	OpenJoins       int64 `json:"open_joins"`
	UnmatchedLeaves int64 `json:"leave_only"`
}

// Table implements Result: the verdict's figures in one row.
func (r *SoakResult) Table() ([]string, [][]string) {
	g := func(v float64) string {
		if v < 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", v)
	}
	return []string{"scenario", "minutes", "clients", "RSS first", "RSS last", "growth", "gor first", "gor last", "growth",
			"published", "delivered", "lost", "dup", "ooo", "reconnects", "4008 srv/cli", "srv cpu", "cli cpu"},
		[][]string{{r.Scenario, fmt.Sprintf("%.1f", r.DurationS/60), fmt.Sprint(r.Clients),
			mibs(r.RSSFirst), mibs(r.RSSLast), fmt.Sprintf("%+.1f%%", r.RSSGrowthPct),
			g(r.GoroutinesFirst), g(r.GoroutinesLast), fmt.Sprintf("%+.1f%%", r.GoroutineGrowthPct),
			fInt(r.Published), fInt(r.Delivered), fInt(r.Lost), fInt(r.Duplicated), fInt(r.OutOfOrder + r.Mismatched),
			fInt(r.Reconnects), fmt.Sprintf("%d/%d", r.Server4008, r.Cut4008), fCPU(r.Usage), fCli(r.Usage)}}
}

// MoreTables implements moreTables: the rest of the traffic, then the
// samples.
func (r *SoakResult) MoreTables() []TableData {
	traffic := TableData{
		Cols: []string{"pub p50 ms", "pub p99 ms", "recovered pubs", "drops", "cuts", "recoveries", "not recovered", "slow pauses",
			"whispers", "w delivered", "w expected", "w disorder", "w p99 ms", "churn cycles", "joins seen/exp", "leaves seen", "leave-only", "open joins"},
		Rows: [][]string{{fMS(r.Latency.P50ms), fMS(r.Latency.P99ms), fInt(r.RecoveredPubs), fInt(r.Drops), fInt(r.Cuts),
			fInt(r.Recoveries), fInt(r.NotRecovered), fInt(r.SlowPauses),
			fInt(r.WhispersSent), fInt(r.WhispersRecv), fInt(r.WhispersExpected), fInt(r.WhisperDisorder), fMS(r.WhisperLatency.P99ms),
			fInt(r.Cycles), fmt.Sprintf("%d/%d", r.JoinsSeen, r.JoinsExpected), fInt(r.LeavesSeen), fInt(r.UnmatchedLeaves), fInt(r.OpenJoins)}},
	}
	series := TableData{Cols: []string{"t s", "RSS", "goroutines", "conns", "srv cpu", "cli cpu", "recv/s"}}
	for _, s := range r.Samples {
		series.Rows = append(series.Rows, []string{strconv.FormatFloat(math.Round(s.T*10)/10, 'f', -1, 64), mibs(s.RSS), fmt.Sprint(s.Goroutines), fmt.Sprint(s.Conns),
			fmt.Sprintf("%.2f", s.ServerCPU), fmt.Sprintf("%.2f", s.ClientCPU), fmt.Sprintf("%.0f", s.RecvRate)})
	}
	return []TableData{traffic, series}
}

func mibs(b int64) string { return fmt.Sprintf("%.1fM", float64(b)/(1<<20)) }

// RunSoak runs the soak scenario.
func RunSoak(ctx context.Context, e *Env, c SoakConfig) (*SoakResult, error) {
	c.defaults()
	var id [4]byte
	_, _ = rand.Read(id[:])
	shape := c.shape("soak-" + hex.EncodeToString(id[:]))
	n := shape.total()
	r, err := e.start(ctx, "soak", n, Shape{Soak: &shape})
	if err != nil {
		return nil, err
	}
	defer r.close()
	ctr, err := r.ready(ctx, n)
	if err != nil {
		return nil, err
	}
	if ctr.Failed > 0 {
		return nil, fmt.Errorf("bench: soak: %d of %d clients failed to connect: %s", ctr.Failed, n, strings.Join(r.notes, "; "))
	}
	res := &SoakResult{
		DurationS: c.Duration.Seconds(), WarmupS: c.Warmup.Seconds(), WindowS: c.Window.Seconds(), Clients: n,
		Streams: c.Streams, Rate: c.Rate, Subscribers: c.Subscribers, BulkRate: c.BulkRate, BulkSize: c.BulkSize,
		Slow: c.Slow, HistorySize: c.HistorySize, MaxQueue: c.MaxQueue, Server4008: -1,
	}
	if shape.DropEvery > 0 {
		res.Droppers = (c.Subscribers + shape.DropEvery - 1) / shape.DropEvery
	}
	if fill := c.historyFill(); fill > c.Warmup {
		r.notef("the streams' history (%d publications) fills in about %s, past the %s warm-up: RSS grows by design until then", c.HistorySize, fill.Round(time.Second), c.Warmup)
	}

	r.markCounters(ctx)
	before := r.sample()
	if before.serverOK {
		res.RSSBefore = before.server.RSS
	}
	res.GoroutinesBefore = r.goroutines(ctx)
	if res.GoroutinesBefore < 0 {
		r.notef("the server's goroutines could not be counted (it needs --pprof and the API key)")
	}

	r.setLabel("traffic")
	if err := r.pool.broadcast(command{Cmd: cmdSoakStart}); err != nil {
		return nil, err
	}
	start := time.Now()
	prev, prevRecv := before, int64(0)
	tk := time.NewTicker(c.Sample)
	for time.Since(start) < c.Duration {
		select {
		case <-ctx.Done():
			tk.Stop()
			return nil, ctx.Err()
		case <-tk.C:
		}
		s := r.sample()
		cur, _, _ := r.pool.progress()
		u := s.since(prev)
		smp := SoakSample{T: round3(s.at.Sub(start).Seconds()), RSS: s.server.RSS, Goroutines: r.goroutines(ctx), Conns: r.connections(ctx),
			ServerCPU: u.ServerCPU, ClientCPU: u.ClientCPU}
		if u.Seconds > 0 {
			smp.RecvRate = math.Round(float64(cur.Recv-prevRecv) / u.Seconds)
		}
		res.Samples = append(res.Samples, smp)
		prev, prevRecv = s, cur.Recv
	}
	tk.Stop()
	end := r.sample()
	u := end.since(before)

	r.setLabel("stopping, catching up")
	if err := r.pool.broadcast(command{Cmd: cmdSoakStop}); err != nil {
		return nil, err
	}
	settled, err := r.pool.wait(ctx, evSoakSettled)
	if err != nil {
		return nil, err
	}
	var pending int64
	for _, s := range settled {
		if s.Soak != nil {
			pending += s.Soak.Pending
		}
	}
	if pending > 0 {
		r.notef("%d subscribers or churners were still not settled a minute after the traffic stopped", pending)
	}
	r.setLabel("settling")
	if err := sleep(ctx, c.PresenceGrace+c.Settle); err != nil {
		return nil, err
	}
	pre, err := r.pool.collectReports(ctx, false)
	if err != nil {
		return nil, err
	}
	pubs := map[string]int64{}
	for _, rep := range pre {
		if rep.Soak != nil {
			for k, v := range rep.Soak.Published {
				pubs[k] += v
			}
		}
	}
	tops := map[string]uint64{}
	for k := 0; k < shape.pubStreams(); k++ {
		name := shape.pubStream(k)
		_, top, err := r.env.Target.StreamTop(ctx, name)
		if err != nil {
			top = uint64(pubs[name])
			r.notef("stream tops from the publishers' counts (the server's history API: %v)", err)
		} else if int64(top) != pubs[name] {
			r.notef("%s: the server's top offset is %d, the publisher sent %d", name, top, pubs[name])
		}
		tops[name] = top
		res.Published += pubs[name]
	}
	r.setLabel("counting")
	if err := r.pool.broadcast(command{Cmd: cmdCollect, Final: true, Tops: tops}); err != nil {
		return nil, err
	}
	rs, err := r.pool.wait(ctx, evStats)
	if err != nil {
		return nil, err
	}
	fin := r.sample()
	if fin.serverOK {
		res.RSSSettled = fin.server.RSS
	}
	res.GoroutinesSettled = r.goroutines(ctx)
	res.ConnsSettled = r.connections(ctx)

	var sc SoakCounts
	var lat Histogram
	closes := map[int]int64{}
	var codes map[int]int64
	for _, rep := range rs {
		sc.add(rep.Soak)
		lat.Merge(rep.Lat)
		for k, v := range rep.Counters.Closes {
			closes[k] += v
		}
		codes = addCodes(codes, rep.Counters.Codes)
	}
	all := merge(rs)
	res.Expected, res.Delivered, res.Lost, res.Duplicated = sc.Expected, sc.Delivered, sc.Lost, sc.Duplicated
	res.OutOfOrder, res.Mismatched, res.RecoveredPubs, res.Behind = sc.OutOfOrder, sc.Mismatched, sc.RecoveredPubs, sc.Behind
	res.Latency = lat.Summary()
	res.Drops, res.Cuts, res.Reconnects, res.Recoveries = sc.Drops, sc.Cuts, sc.Reconnects, sc.Recoveries
	res.NotRecovered, res.EpochChanges, res.SlowPauses, res.Cut4008 = sc.NotRecovered, sc.EpochChanges, sc.SlowPauses, sc.Cut4008
	if len(closes) > 0 {
		res.Closes = closes
	}
	res.WhispersSent, res.WhispersRecv, res.WhisperDisorder = sc.WhispersSent, sc.WhispersRecv, sc.WhisperDisorder
	res.WhispersExpected = sc.WhispersSent * int64(c.WhisperGroup-1)
	res.WhisperLatency = sc.WhisperLat.Summary()
	res.Cycles, res.JoinsSeen, res.LeavesSeen, res.OpenJoins, res.UnmatchedLeaves = sc.Cycles, sc.JoinsSeen, sc.LeavesSeen, sc.OpenJoins, sc.UnmatchedLeaves
	res.JoinsExpected = sc.Cycles * int64(c.Watchers)

	res.RSSFirst, res.RSSLast, res.RSSGrowthPct = windows(res.Samples, c.Warmup, c.Window, c.Duration, func(s SoakSample) float64 { return float64(s.RSS) })
	gf, gl, gg := windowsF(res.Samples, c.Warmup, c.Window, c.Duration, func(s SoakSample) float64 { return float64(s.Goroutines) })
	res.GoroutinesFirst, res.GoroutinesLast, res.GoroutineGrowthPct = gf, gl, gg

	counters := r.counterDelta(ctx)
	if counters != nil {
		res.Server4008 = int64(counters[`huddle_disconnects_total{code="4008"}`])
	}
	for _, s := range all.Samples {
		r.notef("%s", s)
	}
	if len(codes) > 0 {
		r.notef("error replies by code: %v", codes)
	}
	if sc.PubErrors > 0 {
		r.notef("publishers got %d error replies", sc.PubErrors)
	}
	if all.Unsent > 0 {
		r.notef("%d publications were skipped: a publisher fell over a second behind", all.Unsent)
	}
	if res.Behind > 0 {
		r.notef("%d subscriptions had not reached their stream's top when counted", res.Behind)
	}
	if res.WhispersRecv < res.WhispersExpected {
		r.notef("%d whispers missing (whispers are ephemeral: the server may drop or conflate them under load)", res.WhispersExpected-res.WhispersRecv)
	}
	if res.UnmatchedLeaves > 0 {
		r.notef("presence: %d leaves of members the watchers never saw join: the server sends a join and a leave within one diff as the leave alone (by design)", res.UnmatchedLeaves)
	}
	if res.JoinsSeen+res.UnmatchedLeaves != res.JoinsExpected || res.LeavesSeen != res.JoinsSeen || res.OpenJoins != 0 {
		r.notef("presence: %d joins expected, %d seen (and %d leave-only), %d leaves matched, %d joins without a leave",
			res.JoinsExpected, res.JoinsSeen, res.UnmatchedLeaves, res.LeavesSeen, res.OpenJoins)
	}
	if res.RSSGrowthPct >= 5 || res.GoroutineGrowthPct >= 5 {
		r.notef("grew past the 5%% target: RSS %+.1f%%, goroutines %+.1f%% (medians of the first %s after the warm-up and of the last %s)",
			res.RSSGrowthPct, res.GoroutineGrowthPct, c.Window, c.Window)
	}
	if c.Slow > 0 && res.SlowPauses > 0 && res.Server4008 == 0 {
		r.notef("no slow reader was cut: their pauses (%s) did not fill the kernel's buffers and the %d-byte queue; raise -slow-pause or -bulk-rate", c.SlowPause, c.MaxQueue)
	}
	res.Common = r.common(u, counters)
	return res, nil
}

// goroutines counts the server's goroutines: go_goroutines from /metrics
// when it is there, else the goroutine profile; -1 when neither is.
func (r *run) goroutines(ctx context.Context) int {
	if g, err := r.env.Target.Gauges(ctx); err == nil {
		if v, ok := g["go_goroutines"]; ok {
			return int(v)
		}
	}
	n, err := r.env.Target.Goroutines(ctx)
	if err != nil {
		return -1
	}
	return n
}

// connections reads the server's open connections from /metrics; -1 when
// not there.
func (r *run) connections(ctx context.Context) int {
	g, err := r.env.Target.Gauges(ctx)
	if err != nil {
		return -1
	}
	v, ok := g["huddle_connections"]
	if !ok {
		return -1
	}
	return int(v)
}

// windows is windowsF for integer figures.
func windows(samples []SoakSample, warmup, window, d time.Duration, f func(SoakSample) float64) (first, last int64, growth float64) {
	a, b, g := windowsF(samples, warmup, window, d, f)
	return int64(a), int64(b), g
}

// windowsF returns the median of f over the samples in [warmup,
// warmup+window] and over those in [d-window, d], and the growth from the
// first to the second in percent. Unknown (negative) values are left out.
func windowsF(samples []SoakSample, warmup, window, d time.Duration, f func(SoakSample) float64) (first, last, growth float64) {
	pick := func(from, to time.Duration) float64 {
		var v []float64
		for _, s := range samples {
			t := time.Duration(s.T * float64(time.Second))
			if t >= from && t <= to && f(s) >= 0 {
				v = append(v, f(s))
			}
		}
		if len(v) == 0 {
			return -1
		}
		sort.Float64s(v)
		return Median(v)
	}
	first, last = pick(warmup, warmup+window), pick(d-window, d+time.Second)
	if first > 0 && last >= 0 {
		growth = round3((last - first) / first * 100)
	}
	return first, last, growth
}
