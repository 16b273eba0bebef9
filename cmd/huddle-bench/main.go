// Command huddle-bench measures a real-time server under load. Scenarios:
//
//	idle       N connections, each subscribed: server RSS per connection
//	connect    a connect+subscribe storm at a concurrency: rate, failures
//	broadcast  N subscribers of one stream: time from publish to the LAST one
//	rooms      M rooms of K, publish rate ramped: deliveries/s within a p99
//	whisper    pairs whispering at an offered rate: delivered? latency
//	cursors    rooms of K clients whispering cursors at a rate: latency, CPU
//	presence   join+leave churn on big presence streams: visibility, RSS
//	slow       subscribers that stop reading: others unaffected, slow get 4008
//	soak       mixed traffic for a while: RSS and goroutines flat, deliveries exact
//
// Without -url it builds cmd/huddle and starts it pinned to core 0 with
// GOMAXPROCS=1, with the flags the scenario needs (see each one's -h);
// client processes run on the other cores. Every figure comes with the
// server's and the clients' CPU, read from /proc.
//
//	huddle-bench idle -n 15000
//	huddle-bench broadcast -n 1000 -rate 10 -duration 10s -size 100
//	huddle-bench rooms -rooms 1000 -group 10 -slo 100ms
//
// -adapter sse listens to each client's stream as server-sent events (GET
// /events?stream=S, one response per client) and publishes as cable does.
//
// -adapter cable speaks Action Cable ($pubsub streams, actioncable-v1-ext-json
// or, with -codec json, actioncable-v1-json) to Huddle's /cable or to
// anycable-go; publications go to POST /_broadcast (-broadcast-url,
// -broadcast-key). Without -url it starts Huddle with --public and uses
// /cable and the API key:
//
//	huddle-bench broadcast -adapter cable -url ws://127.0.0.1:8090/cable -broadcast-key KEY -pid PID
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/huddle-rt/huddle/bench"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name := os.Args[1]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch name {
	case "worker":
		// A client process started by the coordinator: task and commands on
		// stdin, reports on stdout.
		err = bench.RunWorker(ctx, os.Stdin, os.Stdout)
	case "summarize":
		// Medians over run directories of --json results (make bench-results).
		if len(os.Args) < 3 {
			fmt.Fprintln(os.Stderr, "usage: huddle-bench summarize RUNDIR...   (each holding <row>.json files)")
			os.Exit(2)
		}
		err = bench.Summarize(os.Stdout, os.Args[2:])
	case "help", "-h", "-help", "--help":
		usage()
		return
	default:
		s, ok := scenarios[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "huddle-bench: unknown scenario %q\n\n", name)
			usage()
			os.Exit(2)
		}
		err = runScenario(ctx, s, os.Args[2:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "huddle-bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: huddle-bench SCENARIO [flags]   (huddle-bench SCENARIO -h for its flags)")
	fmt.Fprintln(os.Stderr, "       huddle-bench summarize RUNDIR...   (medians of --json results, one <row>.json per row)")
	fmt.Fprintln(os.Stderr, "\nscenarios:")
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return scenarios[names[i]].order < scenarios[names[j]].order })
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, scenarios[n].summary)
	}
}

// scenario binds a bench scenario to its flags.
type scenario struct {
	order   int
	summary string
	about   string
	// flags defines the scenario's flags and returns the server flags it
	// needs and its run function, both reading the parsed values.
	flags func(fs *flag.FlagSet) (serverArgs func() []string, run runFunc)
}

type runFunc func(ctx context.Context, e *bench.Env) (bench.Result, error)

func runScenario(ctx context.Context, s scenario, args []string) error {
	fs := flag.NewFlagSet(args0(), flag.ExitOnError)
	tf := targetFlags(fs)
	serverArgs, run := s.flags(fs)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "%s\n\n", strings.TrimSpace(s.about))
		if a := serverArgs(); len(a) > 0 {
			fmt.Fprintf(out, "When it starts the server, it adds: %s\n\n", strings.Join(a, " "))
		} else {
			fmt.Fprintf(out, "When it starts the server, it adds no flags of its own.\n\n")
		}
		fmt.Fprintln(out, "Flags:")
		fs.PrintDefaults()
	}
	_ = fs.Parse(args)
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	env, stop, err := tf.env(ctx, serverArgs())
	if err != nil {
		return err
	}
	defer stop()
	res, err := run(ctx, env)
	if err != nil {
		return err
	}
	bench.WriteTable(os.Stdout, res)
	if err := bench.WriteJSON(os.Stdout, res); err != nil {
		return err
	}
	if tf.json != "" {
		f, err := os.Create(tf.json)
		if err != nil {
			return err
		}
		if err := bench.WriteJSON(f, res); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	return nil
}

// args0 names the flag set after the command line, for messages.
func args0() string {
	if len(os.Args) > 1 {
		return "huddle-bench " + os.Args[1]
	}
	return "huddle-bench"
}

// target holds the flags every scenario shares: which server, which
// protocol, how the clients run.
type target struct {
	url, secret, apiKey, json     string
	pid                           int
	adapter, codec                string
	broadcastURL, broadcastKey    string
	workers, ips, setupConc       int
	spin                          time.Duration
	serverBin, serverCPUs         string
	clientCPUs                    string
	serverProcs                   int
	serverFlags                   bench.ListFlag
	profile                       string
	quiet, inproc                 bool
	defaultClientCPUs, defaultSrv string
}

func targetFlags(fs *flag.FlagSet) *target {
	t := &target{}
	t.defaultSrv, t.defaultClientCPUs = bench.DefaultCPUs()
	fs.StringVar(&t.url, "url", "", "server WebSocket URL; empty builds cmd/huddle and starts it")
	fs.IntVar(&t.pid, "pid", 0, "with -url: the server's pid, for its CPU and RSS from /proc")
	fs.StringVar(&t.secret, "secret", "bench-secret-0123456789abcdef0123456789", "HS256 secret the server verifies client tokens with")
	fs.StringVar(&t.apiKey, "api-key", "", "the server's API key, for /api/stats and presence counts (set for a server it starts)")
	fs.StringVar(&t.json, "json", "", "also write the result as JSON to this file")
	fs.StringVar(&t.adapter, "adapter", "huddle", "protocol adapter: "+strings.Join(bench.AdapterNames(), ", "))
	fs.StringVar(&t.codec, "codec", "", "wire format, where the protocol has several (huddle: msgpack, the default, or json; cable: ext-json, the default, for actioncable-v1-ext-json, or json for actioncable-v1-json)")
	fs.StringVar(&t.broadcastURL, "broadcast-url", "", "cable: where publications are POSTed (default: the -url's host + /_broadcast)")
	fs.StringVar(&t.broadcastKey, "broadcast-key", "", "cable: sent as \"Authorization: Bearer <key>\" with each publication, e.g. anycable-go's --broadcast_key (default: none, or -api-key for a server it starts)")
	fs.IntVar(&t.workers, "workers", 0, "client processes (default: as few as the open-file limit allows, one per 19,000 clients)")
	fs.DurationVar(&t.spin, "spin", -1, "how long each client process keeps polling its sockets before it sleeps: on loopback the server's core pays to wake a sleeping client for every packet, which a remote client never costs it (negative: the scenario's default, 300µs for broadcast and 0 for the others)")
	fs.IntVar(&t.ips, "ips", 16, "spread clients over this many source addresses 127.0.0.2 and up (loopback targets)")
	fs.IntVar(&t.setupConc, "setup-concurrency", 100, "connects each worker has in flight while setting up")
	fs.StringVar(&t.serverBin, "server-bin", "", "huddle binary to start (default: go build ./cmd/huddle)")
	fs.StringVar(&t.serverCPUs, "server-cpus", t.defaultSrv, "taskset CPU list for the server it starts; empty: unpinned")
	fs.IntVar(&t.serverProcs, "server-procs", 1, "GOMAXPROCS of the server it starts; 0: Go's default")
	fs.StringVar(&t.clientCPUs, "client-cpus", t.defaultClientCPUs, "taskset CPU list for client processes; empty: unpinned (also with HUDDLE_BENCH_NOPIN set)")
	fs.Var(&t.serverFlags, "server-flag", "extra flag for the server it starts, e.g. -server-flag=--workers=64 (repeatable)")
	fs.StringVar(&t.profile, "profile", "", "write a CPU profile of the server over the measured phase to this file (starts it with --pprof)")
	fs.BoolVar(&t.quiet, "quiet", false, "no live progress line")
	fs.BoolVar(&t.inproc, "inproc", false, "run the clients in this process instead of worker processes (debugging)")
	return t
}

// adapterConfig configures the adapter for target tg. For the cable
// adapter on a server this tool started, the WebSocket path is /cable
// instead of /ws and the broadcast key defaults to the API key (what
// Huddle's /_broadcast checks).
func (t *target) adapterConfig(tg bench.Target) bench.AdapterConfig {
	c := bench.AdapterConfig{Name: t.adapter, URL: tg.URL, Secret: t.secret, Codec: t.codec,
		BroadcastURL: t.broadcastURL, BroadcastKey: t.broadcastKey}
	if (t.adapter == "cable" || t.adapter == "sse") && tg.Started {
		if u, err := url.Parse(c.URL); err == nil {
			u.Path = "/cable"
			if t.adapter == "sse" {
				u.Scheme, u.Path = "http", "/events"
			}
			c.URL = u.String()
		}
		if c.BroadcastKey == "" {
			c.BroadcastKey = tg.APIKey
		}
	}
	return c
}

// hasFlag says whether args hold flag, alone or as flag=value.
func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// env starts the server unless -url names one and returns the scenario's
// environment; stop ends the server.
func (t *target) env(ctx context.Context, serverArgs []string) (*bench.Env, func(), error) {
	stop := func() {}
	tg := bench.Target{URL: t.url, Pid: t.pid, APIKey: t.apiKey}
	if t.url == "" {
		if t.apiKey == "" {
			t.apiKey = "bench-api-key"
		}
		args := append(append([]string(nil), serverArgs...), t.serverFlags...)
		if (t.adapter == "cable" || t.adapter == "sse") && !hasFlag(args, "--public") {
			args = append(args, "--public") // anonymous Action Cable clients, public $pubsub streams
		}
		flags := strings.Join(args, " ")
		if flags == "" {
			flags = "no scenario flags"
		}
		fmt.Fprintf(os.Stderr, "starting huddle (cpus %q, GOMAXPROCS=%d) with %s\n", t.serverCPUs, t.serverProcs, flags)
		srv, err := bench.StartHuddle(ctx, bench.ServerOptions{
			Bin: t.serverBin, CPUs: t.serverCPUs, GOMAXPROCS: t.serverProcs, Secret: t.secret, APIKey: t.apiKey,
			Pprof: t.profile != "", Args: args, Stderr: os.Stderr,
		})
		if err != nil {
			return nil, nil, err
		}
		stop = srv.Stop
		tg = bench.Target{URL: srv.URL, Pid: srv.Pid, APIKey: t.apiKey, Pprof: t.profile != "", Started: true, Args: srv.Args}
	} else if t.profile != "" {
		tg.Pprof = true // the caller says the server has --pprof
	}
	e := &bench.Env{
		Target:      tg,
		Adapter:     t.adapterConfig(tg),
		Workers:     t.workers,
		Spin:        t.spin,
		IPs:         t.ips,
		Concurrency: t.setupConc,
		Log:         os.Stderr,
		Profile:     t.profile,
	}
	if _, err := bench.NewAdapter(e.Adapter); err != nil {
		stop()
		return nil, nil, err
	}
	if !t.quiet {
		e.Progress = os.Stderr
	}
	if t.inproc {
		e.Launcher = bench.InProcLauncher{}
		e.ClientCores = 0
	} else {
		self, err := os.Executable()
		if err != nil {
			stop()
			return nil, nil, err
		}
		e.Launcher = &bench.ProcLauncher{Exe: self, Args: []string{"worker"}, CPUs: t.clientCPUs, Stderr: os.Stderr}
		if t.clientCPUs != "" {
			e.ClientCores = bench.CPUCount(t.clientCPUs)
		}
	}
	return e, stop, nil
}
