// Command huddle-bench-rpc measures /cable connects through an AnyCable
// RPC backend over HTTP: the connect storm of huddle-bench, its clients
// speaking Action Cable (the cable adapter) and subscribing to an
// application channel, against Huddle started with --rpc-url or against
// any server (anycable-go) given by -url, both calling the same tiny
// backend (bench.RPCBackend), which this command also serves.
//
//	huddle-bench-rpc connect -server-bin bin/huddle -n 10000 -concurrency 500
//	huddle-bench-rpc connect -url ws://127.0.0.1:18090/cable -pid PID -backend-addr 127.0.0.1:18095
//	huddle-bench-rpc backend -addr 127.0.0.1:18095
//
// connect starts the backend as its own process, pinned with the clients
// (-backend-cpus, default the client cores), and reports its calls and CPU
// beside the server's. Without -url it starts Huddle on core 0 with
// GOMAXPROCS=1 and --rpc-url pointing at the backend (and no --public).
// Its clients are worker processes of this same binary ("worker").
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "worker":
		err = bench.RunWorker(ctx, os.Stdin, os.Stdout)
	case "backend":
		err = backendCmd(ctx, os.Args[2:])
	case "connect":
		err = connectCmd(ctx, os.Args[2:])
	case "help", "-h", "-help", "--help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "huddle-bench-rpc: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "huddle-bench-rpc:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: huddle-bench-rpc COMMAND [flags]   (huddle-bench-rpc COMMAND -h for its flags)

commands:
  connect   connect+subscribe storm through an AnyCable HTTP RPC backend: rate, failures, p99s, backend calls
  backend   serve the AnyCable HTTP RPC backend alone (POST <prefix>/connect, /command, /disconnect; GET <prefix>/stats)
`)
}

// backendCmd serves the backend until interrupted, then prints its counts.
func backendCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("huddle-bench-rpc backend", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:18095", "listen address (port 0: any free one)")
	var cfg bench.RPCBackendConfig
	fs.StringVar(&cfg.Prefix, "prefix", "/_anycable", "path the calls go under")
	fs.StringVar(&cfg.Secret, "secret", "", "require Authorization: Bearer <secret> (Huddle --rpc-secret, anycable-go --http_rpc_secret)")
	fs.StringVar(&cfg.Channel, "channel", bench.DefaultBenchChannel, "the application channel it accepts")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	b := bench.NewRPCBackend(cfg)
	// The first line of stdout is the base URL (a parent process reads it).
	fmt.Printf("http://%s%s\n", ln.Addr(), strings.TrimRight(cfg.Prefix, "/"))
	err = b.Serve(ctx, ln)
	c := b.Counts()
	fmt.Fprintf(os.Stderr, "rpc backend: %d calls: connect %d (refused %d), subscribe %d (rejected %d), other %d, disconnect %d, bad %d; at most %d in flight; %d TCP connections\n",
		c.Calls(), c.Connect, c.ConnectRefused, c.Subscribe, c.SubscribeRejected, c.OtherCommands, c.Disconnect, c.Bad, c.MaxInFlight, c.TCPConns)
	return err
}

// connectCmd runs the connect storm through the backend.
func connectCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("huddle-bench-rpc connect", flag.ExitOnError)
	var c bench.ConnectConfig
	fs.IntVar(&c.N, "n", 10000, "clients")
	fs.IntVar(&c.Concurrency, "concurrency", 500, "connects in flight at once, all workers together")
	fs.IntVar(&c.Streams, "streams", 100, "streams the clients' channel subscriptions follow")
	wsURL := fs.String("url", "", "server WebSocket URL (its RPC must point at -backend-addr); empty starts Huddle")
	pid := fs.Int("pid", 0, "with -url: the server's pid, for its CPU and RSS")
	channel := fs.String("channel", bench.DefaultBenchChannel, "application channel the clients subscribe to")
	identity := fs.String("identity", "cookie", "how clients name their user to the backend: cookie or query (bench_user=<user>); none: they do not (every connect is refused)")
	rpcSecret := fs.String("rpc-secret", "bench-rpc-secret", "the backend's bearer secret (given to Huddle as --rpc-secret when it starts it; empty: none)")
	backendAddr := fs.String("backend-addr", "127.0.0.1:0", "where the backend it starts listens")
	backendURL := fs.String("backend-url", "", "use this running backend (http://host/_anycable) instead of starting one")
	backendPid := fs.Int("backend-pid", 0, "with -backend-url: its pid, for its CPU")
	after := fs.Duration("after", 3*time.Second, "after the storm and the clients' close, wait this long and count the backend's disconnect calls")
	srvDefault, cliDefault := bench.DefaultCPUs()
	serverBin := fs.String("server-bin", "", "huddle binary to start (default: go build ./cmd/huddle)")
	serverCPUs := fs.String("server-cpus", srvDefault, "taskset CPU list for the server it starts; empty: unpinned")
	serverProcs := fs.Int("server-procs", 1, "GOMAXPROCS of the server it starts; 0: Go's default")
	var serverFlags bench.ListFlag
	fs.Var(&serverFlags, "server-flag", "extra flag for the server it starts, e.g. -server-flag=--rpc-concurrency=64 (repeatable)")
	clientCPUs := fs.String("client-cpus", cliDefault, "taskset CPU list for the client processes; empty: unpinned")
	backendCPUs := fs.String("backend-cpus", "", "taskset CPU list for the backend it starts (default: -client-cpus)")
	secret := fs.String("secret", "bench-secret-0123456789abcdef0123456789", "the --secret of the Huddle it starts")
	apiKey := fs.String("api-key", "bench-api-key", "the --api-key of the Huddle it starts (its /metrics counters are read)")
	workers := fs.Int("workers", 0, "client processes (default: as few as the open-file limit allows)")
	ips := fs.Int("ips", 16, "spread clients over this many source addresses 127.0.0.2 and up")
	codec := fs.String("codec", "", "ext-json (the default) or json")
	quiet := fs.Bool("quiet", false, "no live progress line")
	jsonOut := fs.String("json", "", "also write the result as JSON to this file")
	_ = fs.Parse(args)
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *identity == "none" {
		*identity = ""
	}
	if *backendCPUs == "" {
		*backendCPUs = *clientCPUs
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	be := &bench.BackendTarget{Pid: *backendPid}
	base := *backendURL
	if base == "" {
		p, err := startBackend(self, *backendCPUs, *backendAddr, *rpcSecret, *channel)
		if err != nil {
			return err
		}
		defer p.stop()
		base, be.Pid = p.base, p.pid
		fmt.Fprintf(os.Stderr, "rpc backend at %s (pid %d, cpus %q)\n", base, p.pid, *backendCPUs)
	}
	if be.StatsURL, err = bench.StatsURLFor(base); err != nil {
		return err
	}

	tg := bench.Target{URL: *wsURL, Pid: *pid}
	if *wsURL == "" {
		sargs := []string{"--rpc-url", base}
		if *rpcSecret != "" {
			sargs = append(sargs, "--rpc-secret", *rpcSecret)
		}
		sargs = append(sargs, serverFlags...)
		fmt.Fprintf(os.Stderr, "starting huddle (cpus %q, GOMAXPROCS=%d) with %s\n", *serverCPUs, *serverProcs, strings.Join(sargs, " "))
		srv, err := bench.StartHuddle(ctx, bench.ServerOptions{
			Bin: *serverBin, CPUs: *serverCPUs, GOMAXPROCS: *serverProcs, Secret: *secret, APIKey: *apiKey,
			Args: sargs, Stderr: os.Stderr,
		})
		if err != nil {
			return err
		}
		defer srv.Stop() // before the backend stops: deferred later, runs first
		u, err := url.Parse(srv.URL)
		if err != nil {
			return err
		}
		u.Path = "/cable"
		tg = bench.Target{URL: u.String(), Pid: srv.Pid, APIKey: *apiKey, Started: true, Args: redactSecret(srv.Args)}
	}
	e := &bench.Env{
		Target:  tg,
		Adapter: bench.AdapterConfig{Name: "cable", URL: tg.URL, Codec: *codec, Channel: *channel, Identity: *identity},
		Workers: *workers, Spin: -1, IPs: *ips, Concurrency: 100, Log: os.Stderr, Backend: be,
		Launcher: &bench.ProcLauncher{Exe: self, Args: []string{"worker"}, CPUs: *clientCPUs, Stderr: os.Stderr},
	}
	if *clientCPUs != "" {
		e.ClientCores = bench.CPUCount(*clientCPUs)
	}
	if !*quiet {
		e.Progress = os.Stderr
	}
	if _, err := bench.NewAdapter(e.Adapter); err != nil {
		return err
	}
	res, err := bench.RunConnect(ctx, e, c)
	if err != nil {
		return err
	}
	if *after > 0 && res.Backend != nil {
		time.Sleep(*after)
		if n, err := be.Counts(ctx); err == nil {
			res.Backend.DisconnectsAfter = n.Disconnect
			res.Notes = append(res.Notes, fmt.Sprintf("the backend had %d disconnect calls %v after the clients closed", n.Disconnect, *after))
		}
	}
	bench.WriteTable(os.Stdout, res)
	if err := bench.WriteJSON(os.Stdout, res); err != nil {
		return err
	}
	if *jsonOut != "" {
		f, err := os.Create(*jsonOut)
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

// redactSecret hides --rpc-secret's value among a server's flags.
func redactSecret(args []string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == "--rpc-secret" && i+1 < len(out) {
			out[i+1] = "..."
		}
	}
	return out
}

// backendProc is a backend process this command started.
type backendProc struct {
	cmd    *exec.Cmd
	pid    int
	base   string
	exited chan struct{}
}

// startBackend runs "self backend" pinned to cpus and reads its base URL.
func startBackend(self, cpus, addr, secret, channel string) (*backendProc, error) {
	name, args := self, []string{"backend", "-addr", addr, "-secret", secret, "-channel", channel}
	if cpus != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("pinning the backend to CPUs %s: %w", cpus, err)
		}
		name, args = ts, append([]string{"-c", cpus, self}, args...)
	}
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} // it goes when this process does
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &backendProc{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		for sc.Scan() {
		}
	}()
	go func() { _ = cmd.Wait(); close(p.exited) }()
	select {
	case line, ok := <-first:
		if ok && strings.HasPrefix(line, "http://") {
			p.base = line
			return p, nil
		}
	case <-time.After(10 * time.Second):
	}
	p.stop()
	return nil, errors.New("the rpc backend did not start")
}

// stop ends the backend: SIGTERM (it prints its counts), then a kill.
func (p *backendProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
