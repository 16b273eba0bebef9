// Command huddle-bench measures a Huddle server. Scenarios so far:
//
//	idle       N connections, each subscribed to a stream: server RSS per connection
//	broadcast  N subscribers of one stream, messages at a rate: time from publish
//	           to the LAST subscriber (p50/p99/max) and missing deliveries
//
// Without -url it builds ./cmd/huddle and runs it pinned to core 0 with
// GOMAXPROCS=1; client processes run on core 1.
//
//	huddle-bench idle -n 10000
//	huddle-bench broadcast -n 1000 -rate 10 -duration 10s -size 100
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/huddle-rt/huddle/bench"
	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: huddle-bench idle|broadcast [flags]   (-h for the flags of one)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "idle":
		err = runIdle(os.Args[2:])
	case "worker":
		err = runWorker(os.Args[2:])
	case "broadcast":
		err = runBroadcast(os.Args[2:])
	case "bsub":
		err = runBroadcastWorker(os.Args[2:])
	default:
		err = fmt.Errorf("unknown scenario %q (have: idle, broadcast)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "huddle-bench:", err)
		os.Exit(1)
	}
}

type idleResult struct {
	Scenario       string  `json:"scenario"`
	Connections    int     `json:"connections"`
	Failed         int64   `json:"failed"`
	BaselineRSS    int64   `json:"baseline_rss_bytes"`
	LoadedRSS      int64   `json:"loaded_rss_bytes"`
	PerConnBytes   float64 `json:"rss_per_connection_bytes"`
	ServerCPUSec   float64 `json:"server_cpu_seconds"`
	ConnectSeconds float64 `json:"connect_seconds"`
}

func runIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	n := fs.Int("n", 10000, "connections")
	workers := fs.Int("workers", 0, "client processes (default: one per 5,000 connections)")
	tg := targetFlags(fs)
	streams := fs.Int("streams", 100, "streams the connections spread over")
	settle := fs.Duration("settle", 3*time.Second, "wait after connecting before reading RSS")
	_ = fs.Parse(args)
	if *workers <= 0 {
		*workers = (*n + 4999) / 5000
	}
	stop, err := tg.start()
	if err != nil {
		return err
	}
	defer stop()
	url, pid, secret, jsonOut := &tg.url, &tg.pid, &tg.secret, &tg.json
	var base bench.ProcStats
	if *pid > 0 {
		base, _ = bench.ReadProc(*pid)
	}
	start := time.Now()
	procs, err := spawnWorkers(*n, *workers, func(w, first, count int) []string {
		return []string{"worker", "-url", *url, "-n", strconv.Itoa(count), "-first", strconv.Itoa(first),
			"-local", localAddr(w), "-secret", *secret, "-streams", strconv.Itoa(*streams)}
	})
	if err != nil {
		return err
	}
	failed := waitReady(procs)
	connectTime := time.Since(start)
	fmt.Fprintf(os.Stderr, "%d connections up in %v (%d failed); settling %v\n", *n, connectTime.Round(time.Millisecond), failed, *settle)
	time.Sleep(*settle)
	res := idleResult{Scenario: "idle", Connections: *n, Failed: failed, ConnectSeconds: connectTime.Seconds()}
	if *pid > 0 {
		loaded, _ := bench.ReadProc(*pid)
		res.BaselineRSS, res.LoadedRSS = base.RSS, loaded.RSS
		res.PerConnBytes = float64(loaded.RSS-base.RSS) / float64(int64(*n)-failed)
		res.ServerCPUSec = (loaded.CPUTime - base.CPUTime).Seconds()
	}
	for _, p := range procs {
		p.stdin.Close()
	}
	for _, p := range procs {
		_ = p.cmd.Wait()
	}
	fmt.Printf("%-8s %12s %8s %14s %14s %16s %10s\n", "scenario", "connections", "failed", "baseline RSS", "loaded RSS", "RSS/connection", "server CPU")
	fmt.Printf("%-8s %12d %8d %13.1fM %13.1fM %14.0f B %9.2fs\n", res.Scenario, res.Connections, res.Failed,
		float64(res.BaselineRSS)/(1<<20), float64(res.LoadedRSS)/(1<<20), res.PerConnBytes, res.ServerCPUSec)
	return report(res, *jsonOut)
}

// runWorker opens connections and holds them until stdin closes.
func runWorker(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	url := fs.String("url", "", "")
	n := fs.Int("n", 0, "")
	first := fs.Int("first", 0, "")
	local := fs.String("local", "", "")
	secret := fs.String("secret", "", "")
	streams := fs.Int("streams", 100, "")
	_ = fs.Parse(args)
	ip := net.ParseIP(*local)
	var failed atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	sem := make(chan struct{}, 200)
	var wg sync.WaitGroup
	for i := 0; i < *n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			user := "u" + strconv.Itoa(*first+i)
			tok, _ := auth.SignHS256([]byte(*secret), user, time.Now().Add(time.Hour), nil,
				map[string][]string{"idle:*": {"sub"}})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := bench.IdleConn(ctx, *url, ip, tok, "idle:"+strconv.Itoa((*first+i)%*streams))
			if err != nil {
				if failed.Add(1) <= 3 {
					fmt.Fprintln(os.Stderr, "worker:", err)
				}
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	fmt.Printf("ready %d\n", failed.Load())
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return nil
}

type server struct {
	cmd *exec.Cmd
	url string
	dir string
}

// startServer builds ./cmd/huddle and runs it pinned to core 0 with
// GOMAXPROCS=1 (clients run on the other core).
func startServer(secret string) (*server, error) {
	dir, err := os.MkdirTemp("", "huddle-bench")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "huddle")
	build := exec.Command("go", "build", "-o", bin, "./cmd/huddle")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build ./cmd/huddle (run from the repository root): %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"--addr", addr, "--secret", secret, "--log-level", "warn"}
	var cmd *exec.Cmd
	if _, err := exec.LookPath("taskset"); err == nil {
		cmd = exec.Command("taskset", append([]string{"-c", "0", bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, url: "ws://" + addr + "/ws", dir: dir}
	for i := 0; i < 100; i++ {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			return s, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("server did not become ready on %s", addr)
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
	}
	os.RemoveAll(s.dir)
}

// clientCommand runs a client worker process, pinned to core 1 when taskset
// is there (the server has core 0).
func clientCommand(self string, args ...string) *exec.Cmd {
	if _, err := exec.LookPath("taskset"); err == nil && os.Getenv("HUDDLE_BENCH_NOPIN") == "" {
		return exec.Command("taskset", append([]string{"-c", "1", self}, args...)...)
	}
	return exec.Command(self, args...)
}

type broadcastResult struct {
	Scenario      string  `json:"scenario"`
	Subscribers   int     `json:"subscribers"`
	Rate          float64 `json:"rate_per_second"`
	Size          int     `json:"size_bytes"`
	Messages      int     `json:"messages"`
	Missing       int64   `json:"missing_deliveries"`
	P50ms         float64 `json:"time_to_last_p50_ms"`
	P99ms         float64 `json:"time_to_last_p99_ms"`
	Maxms         float64 `json:"time_to_last_max_ms"`
	ServerCPU     float64 `json:"server_cpu_percent"`
	ServerRSS     int64   `json:"server_rss_bytes"`
	ClientWorkers int     `json:"client_workers"`
}

func runBroadcast(args []string) error {
	fs := flag.NewFlagSet("broadcast", flag.ExitOnError)
	n := fs.Int("n", 1000, "subscribers")
	rate := fs.Float64("rate", 10, "messages per second")
	duration := fs.Duration("duration", 10*time.Second, "how long to publish")
	size := fs.Int("size", 100, "payload bytes")
	workers := fs.Int("workers", 0, "client processes (default: one per 2,500 subscribers, at least 2)")
	tg := targetFlags(fs)
	_ = fs.Parse(args)
	if *workers <= 0 {
		*workers = max(2, (*n+2499)/2500)
	}
	stop, err := tg.start()
	if err != nil {
		return err
	}
	defer stop()
	url, pid, secret, jsonOut := &tg.url, &tg.pid, &tg.secret, &tg.json
	stream := "bench:broadcast"
	procs, err := spawnWorkers(*n, *workers, func(w, first, count int) []string {
		return []string{"bsub", "-url", *url, "-n", strconv.Itoa(count), "-local", localAddr(w), "-secret", *secret, "-stream", stream}
	})
	if err != nil {
		return err
	}
	waitReady(procs)
	tok, _ := auth.SignHS256([]byte(*secret), "publisher", time.Now().Add(time.Hour), nil, map[string][]string{"bench:*": {"pub"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	pub, _, err := wsclient.DialConnected(ctx, *url, tok, wsclient.Options{})
	cancel()
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	defer pub.Close()
	var before bench.ProcStats
	if *pid > 0 {
		before, _ = bench.ReadProc(*pid)
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / *rate)
	total := int(duration.Seconds() * *rate)
	next := start
	for i := 0; i < total; i++ {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		if err := pub.Send(&protocol.Publish{ID: uint64(i + 1), S: stream, Data: bench.Payload(uint64(i), time.Now(), *size)}); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if i%int(max(1, *rate)) == 0 {
			fmt.Fprintf(os.Stderr, "\rpublished %d/%d", i+1, total)
		}
	}
	elapsed := time.Since(start)
	fmt.Fprintf(os.Stderr, "\rpublished %d in %v; waiting for deliveries\n", total, elapsed.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	res := broadcastResult{Scenario: "broadcast", Subscribers: *n, Rate: *rate, Size: *size, Messages: total, ClientWorkers: len(procs)}
	if *pid > 0 {
		after, _ := bench.ReadProc(*pid)
		res.ServerCPU = 100 * (after.CPUTime - before.CPUTime).Seconds() / (elapsed + 2*time.Second).Seconds()
		res.ServerRSS = after.RSS
	}
	worst := make(map[uint64]int64)
	counts := make(map[uint64]int)
	for _, p := range procs {
		p.stdin.Close()
		for p.out.Scan() {
			var st []bench.SeqStat
			if err := json.Unmarshal(p.out.Bytes(), &st); err != nil {
				continue
			}
			for _, s := range st {
				worst[s.Seq] = max(worst[s.Seq], s.Worst)
				counts[s.Seq] += s.Count
			}
		}
		_ = p.cmd.Wait()
	}
	var lats []int64
	for i := 0; i < total; i++ {
		res.Missing += int64(*n - counts[uint64(i)])
		if counts[uint64(i)] > 0 {
			lats = append(lats, worst[uint64(i)])
		}
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	res.P50ms = float64(bench.Percentile(lats, 50)) / 1e6
	res.P99ms = float64(bench.Percentile(lats, 99)) / 1e6
	if len(lats) > 0 {
		res.Maxms = float64(lats[len(lats)-1]) / 1e6
	}
	fmt.Printf("%-10s %8s %8s %6s %9s %8s %10s %10s %10s %10s\n", "scenario", "subs", "rate/s", "bytes", "messages", "missing", "p50 ms", "p99 ms", "max ms", "server CPU")
	fmt.Printf("%-10s %8d %8.0f %6d %9d %8d %10.2f %10.2f %10.2f %9.0f%%\n", res.Scenario, res.Subscribers, res.Rate, res.Size, res.Messages, res.Missing, res.P50ms, res.P99ms, res.Maxms, res.ServerCPU)
	return report(res, *jsonOut)
}

// runBroadcastWorker holds subscribers until stdin closes, then prints the
// per-message worst latency and count as JSON.
func runBroadcastWorker(args []string) error {
	fs := flag.NewFlagSet("bsub", flag.ExitOnError)
	url := fs.String("url", "", "")
	n := fs.Int("n", 0, "")
	local := fs.String("local", "", "")
	secret := fs.String("secret", "", "")
	stream := fs.String("stream", "", "")
	_ = fs.Parse(args)
	ip := net.ParseIP(*local)
	rec := bench.NewRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	var ready sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 200)
	for i := 0; i < *n; i++ {
		ready.Add(1)
		sem <- struct{}{}
		tok, _ := auth.SignHS256([]byte(*secret), "s"+strconv.Itoa(i), time.Now().Add(time.Hour), nil, map[string][]string{"bench:*": {"sub"}})
		var once sync.Once
		go bench.Subscriber(ctx, *url, ip, tok, *stream, rec, func(err error) {
			once.Do(func() {
				if err != nil && failed.Add(1) <= 3 {
					fmt.Fprintln(os.Stderr, "subscriber:", err)
				}
				<-sem
				ready.Done()
			})
		})
	}
	ready.Wait()
	fmt.Printf("ready %d\n", failed.Load())
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	b, _ := json.Marshal(rec.Stats())
	fmt.Println(string(b))
	return nil
}

// proc is a client worker process: it prints "ready <failed>" once its
// connections are up, holds them until its stdin closes, then may print
// results.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// spawnWorkers starts worker processes sharing n connections; args gives
// each one's command line.
func spawnWorkers(n, workers int, args func(w, first, count int) []string) ([]proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var procs []proc
	per := (n + workers - 1) / workers
	for w := 0; w < workers; w++ {
		count := min(per, n-w*per)
		if count <= 0 {
			break
		}
		cmd := clientCommand(self, args(w, w*per, count)...)
		cmd.Stderr = os.Stderr
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return procs, err
		}
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		procs = append(procs, proc{cmd, stdin, sc})
	}
	return procs, nil
}

// waitReady waits until every worker has its connections up and returns
// how many failed.
func waitReady(procs []proc) int64 {
	var failed int64
	for _, p := range procs {
		for p.out.Scan() {
			if v, ok := strings.CutPrefix(p.out.Text(), "ready "); ok {
				f, _ := strconv.ParseInt(v, 10, 64)
				failed += f
				break
			}
		}
	}
	return failed
}

// localAddr spreads worker w over its own loopback source address.
func localAddr(w int) string { return fmt.Sprintf("127.0.0.%d", 2+w) }

// report prints res as JSON and writes it to path when set.
func report(res any, path string) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	if path != "" {
		return os.WriteFile(path, append(b, '\n'), 0o644)
	}
	return nil
}

// target is the server a scenario runs against, from the flags every
// scenario shares.
type target struct {
	url, secret, json string
	pid               int
}

func targetFlags(fs *flag.FlagSet) *target {
	t := &target{}
	fs.StringVar(&t.url, "url", "", "server WebSocket URL; empty builds and starts ./cmd/huddle")
	fs.IntVar(&t.pid, "pid", 0, "server pid for /proc readings (with -url)")
	fs.StringVar(&t.secret, "secret", "bench-secret", "HS256 secret of the server")
	fs.StringVar(&t.json, "json", "", "also write the result as JSON to this file")
	return t
}

// start builds and starts the server unless -url names one; stop ends it.
func (t *target) start() (stop func(), err error) {
	if t.url != "" {
		return func() {}, nil
	}
	srv, err := startServer(t.secret)
	if err != nil {
		return nil, err
	}
	t.url, t.pid = srv.url, srv.cmd.Process.Pid
	return srv.stop, nil
}
