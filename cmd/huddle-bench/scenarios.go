package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/huddle-rt/huddle/bench"
)

var scenarios = map[string]scenario{
	"idle": {order: 1, summary: "N connections, each subscribed: server RSS per connection",
		about: `idle: opens -n connections, each subscribed to one of -streams streams, waits -settle,
then reads the server's RSS: (loaded - baseline) / connections. Also reports the
time and CPU the connects took, and CPU while idle (pings).`,
		flags: func(fs *flag.FlagSet) (func() []string, runFunc) {
			var c bench.IdleConfig
			fs.IntVar(&c.N, "n", 10000, "connections")
			fs.IntVar(&c.Streams, "streams", 100, "streams the connections spread over")
			fs.DurationVar(&c.Settle, "settle", 3e9, "wait after connecting before reading RSS")
			return func() []string { return c.ServerArgs() }, func(ctx context.Context, e *bench.Env) (bench.Result, error) {
				return bench.RunIdle(ctx, e, c)
			}
		}},
	"connect": {order: 2, summary: "connect+subscribe storm at a concurrency: rate/s, failures",
		about: `connect: -n clients connect and subscribe, -concurrency of them in flight at once across
all workers; reports connects per second, failures (with samples) and the time from
dial to subscribed.`,
		flags: func(fs *flag.FlagSet) (func() []string, runFunc) {
			var c bench.ConnectConfig
			fs.IntVar(&c.N, "n", 10000, "clients")
			fs.IntVar(&c.Concurrency, "concurrency", 500, "connects in flight at once, all workers together")
			fs.IntVar(&c.Streams, "streams", 100, "streams they subscribe to")
			return func() []string { return c.ServerArgs() }, func(ctx context.Context, e *bench.Env) (bench.Result, error) {
				return bench.RunConnect(ctx, e, c)
			}
		}},
	"broadcast": {order: 3, summary: "N subscribers of one stream: time from publish to the LAST subscriber",
		about: `broadcast: -n subscribers of one stream; one publisher publishes -rate messages a second
of -size bytes for -duration. Each message's latency is its time to the LAST subscriber
(p50/p99/max); missing deliveries are counted. Every delivery's latency is reported too.`,
		flags: func(fs *flag.FlagSet) (func() []string, runFunc) {
			var c bench.BroadcastConfig
			fs.IntVar(&c.N, "n", 1000, "subscribers")
			fs.Float64Var(&c.Rate, "rate", 10, "messages per second")
			fs.DurationVar(&c.Duration, "duration", 10e9, "how long to publish")
			fs.IntVar(&c.Size, "size", 100, "payload bytes (at least 24)")
			fs.DurationVar(&c.Drain, "drain", 2e9, "wait for deliveries after the last publish")
			fs.DurationVar(&c.Warmup, "warmup", 2e9, "publish at -rate this long first, outside the figures (the first messages meet cold caches); -1ns: none")
			return func() []string { return c.ServerArgs() }, func(ctx context.Context, e *bench.Env) (bench.Result, error) {
				return bench.RunBroadcast(ctx, e, c)
			}
		}},
	"rooms": {order: 4, summary: "M rooms of K, publish rate ramped: deliveries/s before p99 passes the SLO",
		about: `rooms: -rooms streams of -group subscribers, each subscriber also publishing to its room.
The total publish rate ramps (-rates, or from -start by -factor up to -max-rate); each step
runs -warmup then -step and reports deliveries/s and their p50/p99. The ramp stops at the
first step whose p99 passes -slo (unless -all); the figure is the best step within it.`,
		flags: func(fs *flag.FlagSet) (func() []string, runFunc) {
			var c bench.RoomsConfig
			var rates string
			fs.IntVar(&c.Rooms, "rooms", 1000, "rooms")
			fs.IntVar(&c.Group, "group", 10, "subscribers per room")
			fs.IntVar(&c.Size, "size", 100, "payload bytes")
			fs.StringVar(&rates, "rates", "", "publications per second of each step, comma-separated (default: a ramp)")
			fs.Float64Var(&c.Start, "start", 500, "first step's publications per second")
			fs.Float64Var(&c.Factor, "factor", 1.5, "each step's rate is the last one's times this")
			fs.Float64Var(&c.MaxRate, "max-rate", 50000, "last step's rate at most")
			fs.DurationVar(&c.Step, "step", 5e9, "measured time per step")
			fs.DurationVar(&c.Warmup, "warmup", 1e9, "unmeasured time at the start of each step")
			fs.DurationVar(&c.SLO, "slo", 100e6, "p99 bound")
			fs.BoolVar(&c.All, "all", false, "run every step, also past the SLO")
			fs.DurationVar(&c.Drain, "drain", 2e9, "wait for deliveries after the last step")
			parse := func() {
				c.Rates = nil
				for _, s := range strings.Split(rates, ",") {
					if v, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && v > 0 {
						c.Rates = append(c.Rates, v)
					}
				}
			}
			return func() []string { parse(); return c.ServerArgs() }, func(ctx context.Context, e *bench.Env) (bench.Result, error) {
				parse()
				if rates != "" && len(c.Rates) == 0 {
					return nil, fmt.Errorf("-rates %q: no rate in it", rates)
				}
				return bench.RunRooms(ctx, e, c)
			}
		}},
	"whisper": {order: 5, summary: "pairs whispering at an offered rate: all delivered? latency",
		about: `whisper: -pairs streams of two clients that whisper to each other, -rate whispers a
second offered in all, for -duration. Reports sent, delivered, missing (dropped or
conflated by the server under load), 4006 refusals, and latency.`,
		flags: func(fs *flag.FlagSet) (func() []string, runFunc) {
			var c bench.WhisperConfig
			fs.IntVar(&c.Pairs, "pairs", 500, "pairs of clients")
			fs.Float64Var(&c.Rate, "rate", 50000, "whispers per second offered, all clients together")
			fs.DurationVar(&c.Duration, "duration", 10e9, "how long to whisper")
			fs.IntVar(&c.Size, "size", 32, "whisper data bytes (at least 24)")
			fs.DurationVar(&c.Drain, "drain", 2e9, "wait for deliveries after the last whisper")
			return func() []string { return c.ServerArgs() }, func(ctx context.Context, e *bench.Env) (bench.Result, error) {
				return bench.RunWhisper(ctx, e, c)
			}
		}},
	"cursors": {order: 6, summary: "rooms of K clients whispering cursors at a rate: latency, server CPU",
		about: `cursors: -rooms streams of -group clients, each whispering its cursor -hz times a second
to the others (every whisper fans out to group-1 clients), for -duration. Reports
deliveries, latency and the server's CPU.`,
		flags: func(fs *flag.FlagSet) (func() []string, runFunc) {
			var c bench.CursorsConfig
			fs.IntVar(&c.Rooms, "rooms", 50, "rooms")
			fs.IntVar(&c.Group, "group", 20, "clients per room")
			fs.Float64Var(&c.Hz, "hz", 30, "cursor whispers per client per second")
			fs.DurationVar(&c.Duration, "duration", 10e9, "how long to whisper")
			fs.IntVar(&c.Size, "size", 32, "whisper data bytes (at least 24)")
			fs.DurationVar(&c.Drain, "drain", 2e9, "wait for deliveries after the last whisper")
			return func() []string { return c.ServerArgs() }, func(ctx context.Context, e *bench.Env) (bench.Result, error) {
				return bench.RunCursors(ctx, e, c)
			}
		}},
	"presence": {order: 7, summary: "join+leave churn on big presence streams: visibility p99, RSS before/after",
		about: `presence: -streams streams with -members present members each (-watchers of them receive
presence diffs; default all). Churning clients join and leave, -rate cycles a second in all
(each cycle one join and one leave, -hold apart), for -duration. Reports the time from each
join/leave to each watcher (and to its last watcher), missing ones, and the server's RSS
before the churn, after it, and after -settle, with the presence counts before and after.`,
		flags: func(fs *flag.FlagSet) (func() []string, runFunc) {
			var c bench.PresenceConfig
			fs.IntVar(&c.Streams, "streams", 1, "presence streams")
			fs.IntVar(&c.Members, "members", 10000, "static members per stream")
			fs.IntVar(&c.Watchers, "watchers", 0, "members per stream that receive presence (0: all)")
			fs.Float64Var(&c.Rate, "rate", 200, "join+leave cycles per second, all streams")
			fs.DurationVar(&c.Hold, "hold", 1e9, "how long a churner stays joined")
			fs.IntVar(&c.Churners, "churners", 0, "churning clients per stream (0: enough for -rate and -hold)")
			fs.DurationVar(&c.Duration, "duration", 20e9, "how long to churn")
			fs.DurationVar(&c.Settle, "settle", 3e9, "wait before and after the churn")
			return func() []string { return c.ServerArgs() }, func(ctx context.Context, e *bench.Env) (bench.Result, error) {
				return bench.RunPresence(ctx, e, c)
			}
		}},
	"slow": {order: 8, summary: "subscribers that stop reading: others unaffected, slow ones get 4008",
		about: `slow: -good and -slow subscribers of one stream, a publisher at -rate messages of -size
bytes. For -baseline everyone reads; then the slow ones stop reading (with a -recv-buf
socket buffer) for -slowdown. Reports the good subscribers' time-to-last in each phase, and
how many slow ones were cut with 4008 (they read again at the end to see their close).`,
		flags: func(fs *flag.FlagSet) (func() []string, runFunc) {
			var c bench.SlowConfig
			fs.IntVar(&c.Good, "good", 200, "subscribers that keep reading")
			fs.IntVar(&c.Slow, "slow", 20, "subscribers that stop reading")
			fs.Float64Var(&c.Rate, "rate", 200, "messages per second")
			fs.IntVar(&c.Size, "size", 2000, "payload bytes")
			fs.DurationVar(&c.Baseline, "baseline", 5e9, "phase where everyone reads")
			fs.DurationVar(&c.Slowdown, "slowdown", 15e9, "phase where the slow ones do not read")
			fs.IntVar(&c.MaxQueue, "max-queue", 256<<10, "the server's --max-queue (when it starts the server)")
			fs.IntVar(&c.RecvBuf, "recv-buf", 4096, "SO_RCVBUF of the slow subscribers")
			fs.DurationVar(&c.Wait, "wait", 10e9, "how long the slow ones may take to see their close")
			fs.DurationVar(&c.Drain, "drain", 2e9, "wait for deliveries after the last publish")
			return func() []string { return c.ServerArgs() }, func(ctx context.Context, e *bench.Env) (bench.Result, error) {
				return bench.RunSlow(ctx, e, c)
			}
		}},
	"soak": {order: 9, summary: "mixed traffic for -duration: server RSS and goroutines flat? every delivery exactly once?",
		about: `soak: mixed traffic at moderate rates for -duration, all at once: publications on -streams
streams read by -subscribers subscribers that check every delivery (each offset exactly once,
in order, with its payload); a bulk stream of big publications read by the slow readers and
-bulk-subs subscribers; a -reconnect-frac of the subscribers dropping their connection about
every -reconnect-every and coming back with recovery; -slow readers that stop reading for
-slow-pause about every -slow-every (the server cuts them with 4008; they come back with
recovery); whisper groups; presence churn (connections that open, join, leave and close).
Samples the server's RSS (/proc) and goroutines (its goroutine profile) every -sample, and
reports the growth from the median of the first -window after -warmup to the median of the
last -window (target: under 5%), and the deliveries: lost, duplicated, out of order.`,
		flags: func(fs *flag.FlagSet) (func() []string, runFunc) {
			var c bench.SoakConfig
			fs.DurationVar(&c.Duration, "duration", 60e9, "how long the traffic runs")
			fs.DurationVar(&c.Warmup, "warmup", 0, "samples before this are not compared (0: until the streams' history is full, plus 10s, within a sixth to a third of -duration)")
			fs.DurationVar(&c.Window, "window", 0, "the growth compares the median of the first window after -warmup with the last one's (0: a third of the rest, at most 1m)")
			fs.DurationVar(&c.Sample, "sample", 5e9, "how often to sample the server's RSS and goroutines")
			fs.IntVar(&c.Streams, "streams", 4, "publication streams every subscriber reads")
			fs.Float64Var(&c.Rate, "rate", 10, "publications per second on each stream")
			fs.IntVar(&c.Size, "size", 200, "publication bytes")
			fs.IntVar(&c.Subscribers, "subscribers", 40, "subscribers that check every delivery")
			fs.Float64Var(&c.BulkRate, "bulk-rate", 10, "publications per second on the bulk stream (negative: none)")
			fs.IntVar(&c.BulkSize, "bulk-size", 16<<10, "bulk publication bytes")
			fs.IntVar(&c.BulkSubs, "bulk-subs", 6, "subscribers that also read the bulk stream, besides the slow readers (negative: none)")
			fs.Float64Var(&c.ReconnectFrac, "reconnect-frac", 0.25, "fraction of the subscribers that drop their connection now and then (negative: none)")
			fs.DurationVar(&c.ReconnectEvery, "reconnect-every", 20e9, "a dropping subscriber drops about this often (±50%)")
			fs.DurationVar(&c.Offline, "offline", 2e9, "a dropped subscriber stays away up to this long")
			fs.IntVar(&c.Slow, "slow", 2, "slow readers (negative: none)")
			fs.DurationVar(&c.SlowEvery, "slow-every", 60e9, "a slow reader reads about this long (±50%) between pauses")
			fs.DurationVar(&c.SlowPause, "slow-pause", 40e9, "how long a slow reader stops reading")
			fs.IntVar(&c.RecvBuf, "recv-buf", 4096, "SO_RCVBUF of the slow readers")
			fs.IntVar(&c.MaxQueue, "max-queue", 256<<10, "the server's --max-queue (when it starts the server)")
			fs.IntVar(&c.WhisperGroups, "whisper-groups", 5, "groups of clients whispering to each other (negative: none)")
			fs.IntVar(&c.WhisperGroup, "whisper-group", 4, "clients per whisper group")
			fs.Float64Var(&c.WhisperHz, "whisper-hz", 5, "whispers per second of each whisperer")
			fs.IntVar(&c.PresenceStreams, "presence-streams", 2, "presence streams with churn (negative: none)")
			fs.IntVar(&c.Watchers, "watchers", 5, "clients per presence stream that watch the churn")
			fs.IntVar(&c.Churners, "churners", 10, "clients per presence stream that connect, join, leave and disconnect in cycles")
			fs.DurationVar(&c.Hold, "hold", 1e9, "how long a churner stays joined (±50%)")
			fs.DurationVar(&c.Rest, "rest", 500e6, "how long a churner rests between cycles (±50%)")
			fs.DurationVar(&c.PresenceGrace, "presence-grace", 5e9, "the server's --presence-grace (when it starts the server)")
			fs.IntVar(&c.HistorySize, "history", 0, "the server's --history-size (0: enough for the longest absence at the highest rate)")
			fs.DurationVar(&c.Settle, "settle", 2e9, "wait after the traffic stopped, beyond the presence grace, before the final counts")
			return func() []string { return c.ServerArgs() }, func(ctx context.Context, e *bench.Env) (bench.Result, error) {
				return bench.RunSoak(ctx, e, c)
			}
		}},
}
