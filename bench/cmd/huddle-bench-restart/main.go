// Command huddle-bench-restart measures a rolling restart: two Huddle nodes
// on one redis-server, N clients subscribed to S streams that a publisher
// feeds through the HTTP API, then each node in turn is drained (SIGTERM)
// and started again. A client told to go (4009) reconnects to the other
// node after a random wait (the SDK's drainJitter) and resubscribes with
// recovery. It reports the peak connect rate each node took, the peak CPU
// of each node, and every publication lost or delivered twice.
//
//	huddle-bench-restart -bin bin/huddle -n 10000 -drain-window 5s
//
// Everything runs on this machine's loopback; clients spread over source
// addresses 127.0.0.2-127.0.0.9. It stops by itself.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/huddle-rt/huddle/bench"
)

const (
	secret = "bench-restart-secret-0123456789abcdef"
	apiKey = "bench-restart-api-key"
)

type config struct {
	bin         string
	redisBin    string
	n           int
	streams     int
	rate        float64
	drainWindow time.Duration
	jitter      time.Duration
	settle      time.Duration
	dialers     int
	json        string
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/huddle", "huddle binary")
	flag.StringVar(&c.redisBin, "redis-server", "redis-server", "redis-server binary")
	flag.IntVar(&c.n, "n", 10000, "clients")
	flag.IntVar(&c.streams, "streams", 20, "streams, the clients spread over them")
	flag.Float64Var(&c.rate, "rate", 100, "publications a second, over all streams")
	flag.DurationVar(&c.drainWindow, "drain-window", 5*time.Second, "the nodes' --drain-window")
	flag.DurationVar(&c.jitter, "jitter", 500*time.Millisecond, "a client waits up to this (at random) before reconnecting after 4009, as the SDK's drainJitter")
	flag.DurationVar(&c.settle, "settle", 5*time.Second, "quiet time between steps")
	flag.IntVar(&c.dialers, "dialers", 200, "connections dialled at once at the start")
	flag.StringVar(&c.json, "json", "", "write the result as JSON to this file")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "huddle-bench-restart:", err)
		os.Exit(1)
	}
}

// node is one Huddle process, restartable on its address.
type node struct {
	name, addr string
	args       []string
	bin        string
	cmd        *exec.Cmd
	exited     chan struct{}

	connects  atomic.Int64 // clients that subscribed on it
	cpuMu     sync.Mutex
	cpuPeak   float64 // the most CPU it used over a second, in cores
	cpuLast   int64   // ticks at the last sample
	cpuWindow []int64 // ticks of the last samples (one second)
}

func (n *node) start() error {
	n.cmd = exec.Command(n.bin, n.args...)
	n.cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	n.cmd.Stderr = os.Stderr
	if err := n.cmd.Start(); err != nil {
		return err
	}
	n.exited = make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	n.cpuMu.Lock()
	n.cpuLast, n.cpuWindow = 0, nil
	n.cpuMu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get("http://" + n.addr + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready", n.name)
}

// drain sends SIGTERM and waits for the process to end.
func (n *node) drain() time.Duration {
	start := time.Now()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	<-n.exited
	return time.Since(start)
}

// sample reads the process's CPU ticks; every 100 ms.
func (n *node) sample() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(n.cmd.Process.Pid) + "/stat")
	if err != nil {
		return
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	t := ut + st
	n.cpuMu.Lock()
	defer n.cpuMu.Unlock()
	n.cpuWindow = append(n.cpuWindow, t)
	if len(n.cpuWindow) > 11 {
		n.cpuWindow = n.cpuWindow[1:]
	}
	if len(n.cpuWindow) == 11 {
		cores := float64(n.cpuWindow[10]-n.cpuWindow[0]) / 100 // USER_HZ 100, over 1 s
		n.cpuPeak = max(n.cpuPeak, cores)
	}
}

// client is one subscriber that checks every offset of its stream.
type client struct {
	idx    int
	stream string
	local  net.IP

	mu     sync.Mutex
	cur    int // the node it is on
	conn   bench.Conn
	epoch  string
	last   uint64 // the last offset received
	lost   int64  // offsets never received
	dup    int64  // offsets received twice
	resubs int
}

type restart struct {
	cfg      config
	ad       [2]bench.Adapter
	nodes    [2]*node
	clients  []*client
	buckets  sync.Map // second -> *[2]atomic.Int64: subscribes per node per second since start
	start    time.Time
	failed   atomic.Int64
	notRecov atomic.Int64
}

func run(c config) error {
	dir, err := os.MkdirTemp("", "huddle-bench-restart")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	redisPort, err := freePort()
	if err != nil {
		return err
	}
	redis := exec.Command(c.redisBin, "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := redis.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	defer func() { _ = redis.Process.Kill(); _ = redis.Wait() }()
	time.Sleep(300 * time.Millisecond)

	r := &restart{cfg: c, start: time.Now()}
	for i := range r.nodes {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		r.nodes[i] = &node{name: "node" + strconv.Itoa(i), addr: addr, bin: c.bin, args: []string{
			"--addr", addr, "--node", "n" + strconv.Itoa(i), "--broker", "redis",
			"--redis-url", "redis://127.0.0.1:" + strconv.Itoa(redisPort) + "/0",
			"--secret", secret, "--api-key", apiKey, "--log-level", "warn",
			"--drain-window", c.drainWindow.String(), "--shutdown-timeout", (c.drainWindow + 10*time.Second).String(),
			"--rule", "rr:*=sub,history;history=100000;ttl=10m", "--max-queue", "16MiB",
		}}
		if err := r.nodes[i].start(); err != nil {
			return err
		}
		defer func(n *node) {
			if n.cmd != nil && n.cmd.ProcessState == nil {
				_ = n.cmd.Process.Kill()
			}
		}(r.nodes[i])
		r.ad[i], err = bench.NewAdapter(bench.AdapterConfig{Name: "huddle", URL: "ws://" + addr + "/ws", Secret: secret})
		if err != nil {
			return err
		}
	}
	stopSampling := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				for _, n := range r.nodes {
					n.sample()
				}
			}
		}
	}()
	defer close(stopSampling)

	// Connect every client, half on each node.
	fmt.Fprintf(os.Stderr, "connecting %d clients...\n", c.n)
	r.clients = make([]*client, c.n)
	sem := make(chan struct{}, c.dialers)
	var wg sync.WaitGroup
	for i := range r.clients {
		cl := &client{idx: i, stream: "rr:" + strconv.Itoa(i%c.streams), local: net.IPv4(127, 0, 0, byte(2+i%8)), cur: i % 2}
		r.clients[i] = cl
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.connect(cl, cl.cur)
		}()
	}
	wg.Wait()
	if f := r.failed.Load(); f > 0 {
		return fmt.Errorf("%d clients failed to connect", f)
	}
	for _, n := range r.nodes {
		n.connects.Store(0)
		n.cpuMu.Lock()
		n.cpuPeak = 0
		n.cpuMu.Unlock()
	}
	r.buckets.Clear()
	fmt.Fprintf(os.Stderr, "connected; publishing %.0f/s\n", c.rate)
	pubCtx, stopPub := context.WithCancel(context.Background())
	defer stopPub()
	var pubWG sync.WaitGroup
	pubWG.Add(1)
	var published atomic.Int64
	tops := make([]atomic.Uint64, c.streams)
	go func() {
		defer pubWG.Done()
		r.publish(pubCtx, &published, tops)
	}()
	time.Sleep(c.settle)

	var drains [2]time.Duration
	for i, n := range r.nodes {
		fmt.Fprintf(os.Stderr, "draining %s...\n", n.name)
		drains[i] = n.drain()
		fmt.Fprintf(os.Stderr, "%s drained in %v; starting it again\n", n.name, drains[i].Round(time.Millisecond))
		if err := n.start(); err != nil {
			return err
		}
		time.Sleep(c.settle)
	}
	stopPub()
	pubWG.Wait()
	time.Sleep(c.settle) // the last publications arrive

	res := result{Clients: c.n, Streams: c.streams, Rate: c.rate, DrainWindow: c.drainWindow.String(), Jitter: c.jitter.String(),
		Published: published.Load(), DrainSeconds: []float64{drains[0].Seconds(), drains[1].Seconds()}}
	for _, cl := range r.clients {
		cl.mu.Lock()
		top := tops[cl.idx%c.streams].Load()
		if cl.last < top {
			cl.lost += int64(top - cl.last)
		}
		res.Lost += cl.lost
		res.Duplicated += cl.dup
		res.Reconnects += int64(cl.resubs)
		cl.mu.Unlock()
	}
	res.NotRecovered = r.notRecov.Load()
	res.Failed = r.failed.Load()
	r.buckets.Range(func(_, v any) bool {
		b := v.(*[2]atomic.Int64)
		for i := range b {
			res.PeakConnectsPerSecond[i] = max(res.PeakConnectsPerSecond[i], b[i].Load())
		}
		return true
	})
	for i, n := range r.nodes {
		n.cpuMu.Lock()
		res.PeakCPU[i] = n.cpuPeak
		n.cpuMu.Unlock()
		res.Connects[i] = n.connects.Load()
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(out))
	if c.json != "" {
		_ = os.MkdirAll(filepath.Dir(c.json), 0o755)
		_ = os.WriteFile(c.json, out, 0o644)
	}
	if res.Lost > 0 || res.Duplicated > 0 || res.Failed > 0 {
		return errors.New("publications were lost or duplicated, or clients failed")
	}
	return nil
}

type result struct {
	Clients               int        `json:"clients"`
	Streams               int        `json:"streams"`
	Rate                  float64    `json:"rate"`
	DrainWindow           string     `json:"drain_window"`
	Jitter                string     `json:"jitter"`
	Published             int64      `json:"published"`
	DrainSeconds          []float64  `json:"drain_seconds"`
	Reconnects            int64      `json:"reconnects"`
	Connects              [2]int64   `json:"connects_per_node"`
	PeakConnectsPerSecond [2]int64   `json:"peak_connects_per_second"`
	PeakCPU               [2]float64 `json:"peak_cpu_cores"`
	Lost                  int64      `json:"lost"`
	Duplicated            int64      `json:"duplicated"`
	NotRecovered          int64      `json:"not_recovered"`
	Failed                int64      `json:"failed"`
}

// connect dials node i and subscribes cl, recovering from its last offset;
// it tries the other node if i fails, for up to 30 s.
func (r *restart) connect(cl *client, i int) {
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 0; ; attempt++ {
		if err := r.try(cl, i); err == nil {
			return
		} else if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "client %d: %v\n", cl.idx, err)
			r.failed.Add(1)
			return
		}
		i = 1 - i
		time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
	}
}

func (r *restart) try(cl *client, i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var gen atomic.Pointer[bench.Conn]
	conn, err := r.ad[i].Dial(ctx, bench.DialOptions{User: "u" + strconv.Itoa(cl.idx), Local: cl.local}, func(e *bench.Event) {
		r.event(cl, i, gen.Load(), e)
	})
	if err != nil {
		return err
	}
	cl.mu.Lock()
	cl.conn, cl.cur = conn, i
	var o bench.SubOptions
	if cl.epoch != "" {
		o.Recover = &bench.Position{Epoch: cl.epoch, Offset: cl.last}
	}
	cl.mu.Unlock()
	gen.Store(&conn)
	if err := conn.Subscribe(ctx, cl.stream, o); err != nil {
		conn.Close()
		return err
	}
	r.nodes[i].connects.Add(1)
	sec := int64(time.Since(r.start) / time.Second)
	v, _ := r.buckets.LoadOrStore(sec, new([2]atomic.Int64))
	v.(*[2]atomic.Int64)[i].Add(1)
	return nil
}

// event checks a client's publications and reconnects it when its node
// closes it. It runs on the reactor: the reconnect goes on a goroutine.
func (r *restart) event(cl *client, i int, conn *bench.Conn, e *bench.Event) {
	switch e.Kind {
	case bench.EventSubscribed:
		cl.mu.Lock()
		if cl.epoch == "" {
			cl.epoch, cl.last = string(e.Epoch), e.Offset
		} else if !e.Recovered {
			r.notRecov.Add(1)
		}
		cl.mu.Unlock()
	case bench.EventPub:
		cl.mu.Lock()
		if cl.epoch == "" {
			cl.epoch = string(e.Epoch)
		}
		switch {
		case e.Offset <= cl.last:
			cl.dup++
		case e.Offset > cl.last+1:
			cl.lost += int64(e.Offset - cl.last - 1)
			cl.last = e.Offset
		default:
			cl.last = e.Offset
		}
		cl.mu.Unlock()
	case bench.EventClosed:
		cl.mu.Lock()
		mine := conn != nil && cl.conn == *conn
		if mine {
			cl.conn = nil
			cl.resubs++
		}
		cl.mu.Unlock()
		if !mine {
			return
		}
		go func() {
			time.Sleep(time.Duration(rand.Int64N(int64(r.cfg.jitter) + 1)))
			r.connect(cl, 1-i)
		}()
	}
}

// publish feeds the streams round robin at the configured rate through
// the API of a node that answers, and records each stream's top offset.
func (r *restart) publish(ctx context.Context, published *atomic.Int64, tops []atomic.Uint64) {
	hc := &http.Client{Timeout: 5 * time.Second}
	every := time.Duration(float64(time.Second) / r.cfg.rate)
	t := time.NewTicker(every)
	defer t.Stop()
	k := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := k % r.cfg.streams
		body := `{"stream":"rr:` + strconv.Itoa(s) + `","data":` + strconv.Itoa(k) + `}`
		for attempt := 0; attempt < 20; attempt++ {
			n := r.nodes[(k+attempt)%2]
			req, _ := http.NewRequest("POST", "http://"+n.addr+"/api/publish", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+apiKey)
			resp, err := hc.Do(req)
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			var out struct {
				Results []struct {
					Offset uint64 `json:"offset"`
				} `json:"results"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if resp.StatusCode == 200 && len(out.Results) == 1 && out.Results[0].Offset > 0 {
				published.Add(1)
				for {
					cur := tops[s].Load()
					if out.Results[0].Offset <= cur || tops[s].CompareAndSwap(cur, out.Results[0].Offset) {
						break
					}
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		k++
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
