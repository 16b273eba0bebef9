// Command huddle-bench measures a Huddle server. This version runs the idle
// scenario: N connections, each subscribed to a stream, and reports the
// server's resident memory per connection.
//
//	huddle-bench idle -n 10000            # builds and starts ./cmd/huddle itself
//	huddle-bench idle -n 10000 -url ws://127.0.0.1:8080/ws -pid 1234 -secret S
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/huddle-rt/huddle/bench"
	"github.com/huddle-rt/huddle/internal/auth"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: huddle-bench idle [flags] | huddle-bench idle -h")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "idle":
		err = runIdle(os.Args[2:])
	case "worker":
		err = runWorker(os.Args[2:])
	default:
		err = fmt.Errorf("unknown scenario %q (have: idle)", os.Args[1])
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
	url := fs.String("url", "", "server WebSocket URL; empty builds and starts ./cmd/huddle")
	pid := fs.Int("pid", 0, "server pid for /proc readings (with -url)")
	secret := fs.String("secret", "bench-secret", "HS256 secret of the server")
	streams := fs.Int("streams", 100, "streams the connections spread over")
	settle := fs.Duration("settle", 3*time.Second, "wait after connecting before reading RSS")
	jsonOut := fs.String("json", "", "also write the result as JSON to this file")
	_ = fs.Parse(args)
	if *workers <= 0 {
		*workers = (*n + 4999) / 5000
	}

	if *url == "" {
		srv, err := startServer(*secret)
		if err != nil {
			return err
		}
		defer srv.stop()
		*url, *pid = srv.url, srv.cmd.Process.Pid
	}
	var base bench.ProcStats
	if *pid > 0 {
		base, _ = bench.ReadProc(*pid)
	}
	start := time.Now()
	self, _ := os.Executable()
	type proc struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Scanner
	}
	var procs []proc
	per := (*n + *workers - 1) / *workers
	for w := 0; w < *workers; w++ {
		count := min(per, *n-w*per)
		if count <= 0 {
			break
		}
		cmd := exec.Command(self, "worker", "-url", *url, "-n", strconv.Itoa(count), "-first", strconv.Itoa(w*per),
			"-local", fmt.Sprintf("127.0.0.%d", 2+w), "-secret", *secret, "-streams", strconv.Itoa(*streams))
		cmd.Stderr = os.Stderr
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, proc{cmd, stdin, bufio.NewScanner(stdout)})
	}
	var failed int64
	for _, p := range procs {
		for p.out.Scan() {
			line := p.out.Text()
			if v, ok := strings.CutPrefix(line, "ready "); ok {
				f, _ := strconv.ParseInt(v, 10, 64)
				failed += f
				break
			}
		}
	}
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
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	if *jsonOut != "" {
		return os.WriteFile(*jsonOut, append(b, '\n'), 0o644)
	}
	return nil
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
