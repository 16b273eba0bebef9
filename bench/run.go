package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Env is what every scenario runs with: the target, the protocol, and how
// client processes start.
type Env struct {
	Target   Target
	Adapter  AdapterConfig
	Launcher Launcher
	// Workers is the number of client processes; 0 uses as few as the
	// open-file limit allows (one per 19,000 connections): each reads all
	// its connections on one thread, and more processes on the one client
	// core would only take turns on it.
	Workers int
	// Spin is how long each client process keeps polling its sockets
	// before it sleeps (see reactorSpin); 0 sleeps at once, negative takes
	// the scenario's default (300µs for broadcast, 0 for the others: a
	// reactor that keeps polling also keeps the Go scheduler from polling
	// the network for the goroutines that dial).
	Spin time.Duration
	// IPs spreads clients over this many source addresses 127.0.0.2 and up
	// (only against a loopback target); 0 lets the system choose.
	IPs int
	// Concurrency is the connects each worker has in flight while setting
	// up (default 100).
	Concurrency int
	// ClientCores is how many cores the clients may use, for the note that
	// a run was client-bound; 0 means every core.
	ClientCores int
	// Progress gets a live progress line; nil shows none.
	Progress io.Writer
	// Log gets notes and the workers' messages; nil discards them.
	Log io.Writer
	// Profile, when set, is where a CPU profile of the server over the
	// measured phase is written (the target needs Pprof and an API key).
	Profile string
	// Backend, when set, is the RPC backend the server calls: the connect
	// scenario reports its calls and CPU over the storm.
	Backend *BackendTarget
}

func (e *Env) log() io.Writer {
	if e.Log == nil {
		return io.Discard
	}
	return e.Log
}

// maxPerWorker keeps each worker under the 20,000 open files a process may
// have, with room for its own.
const maxPerWorker = 19000

func (e *Env) workers(clients int) int {
	w := e.Workers
	if w <= 0 {
		w = 1 // the reactor reads thousands of connections on one thread; processes would only contend for the client core
	}
	w = max(w, (clients+maxPerWorker-1)/maxPerWorker)
	return max(min(w, clients), 1)
}

// locals lists the source addresses clients spread over.
func (e *Env) locals() []string {
	if e.IPs <= 0 || !e.Target.Loopback() {
		return nil
	}
	out := make([]string, 0, e.IPs)
	for i := 0; i < e.IPs && i < 250; i++ {
		out = append(out, fmt.Sprintf("127.0.0.%d", 2+i))
	}
	return out
}

// run is one scenario in progress: its workers, meters and progress line.
type run struct {
	env     *Env
	name    string
	spin    time.Duration // the clients' Shape.Spin
	pool    *pool
	started time.Time
	label   atomic.Pointer[string]
	stop    chan struct{}
	wg      sync.WaitGroup
	notes   []string
	// counters is the server's /metrics at the start of the measured
	// phase; nil when not read.
	counters map[string]float64
}

// start launches the workers for n clients laid out by shape.
func (e *Env) start(ctx context.Context, scenario string, n int, shape Shape) (*run, error) {
	if e.Launcher == nil {
		return nil, fmt.Errorf("bench: no launcher")
	}
	nw := e.workers(n)
	first, count := split(n, nw)
	conc := e.Concurrency
	if conc <= 0 {
		conc = 100
	}
	if e.Spin >= 0 {
		shape.Spin = e.Spin
	}
	tasks := make([]Task, len(first))
	for w := range tasks {
		tasks[w] = Task{
			Scenario: scenario, Worker: w, Workers: len(first), First: first[w], Count: count[w],
			Adapter: e.Adapter, Locals: e.locals(), Concurrency: conc, Shape: shape,
		}
	}
	p, err := startPool(ctx, e.Launcher, tasks, e.log())
	if err != nil {
		return nil, err
	}
	r := &run{env: e, name: scenario, pool: p, spin: shape.Spin, started: time.Now(), stop: make(chan struct{})}
	r.setLabel("connecting")
	if e.Progress != nil {
		r.wg.Add(1)
		go r.progressLine()
	}
	return r, nil
}

func (r *run) setLabel(s string) { r.label.Store(&s) }

func (r *run) notef(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// ready waits until every worker has its clients up; it fails when none
// connected.
func (r *run) ready(ctx context.Context, want int) (Counters, error) {
	rs, err := r.pool.wait(ctx, evReady)
	if err != nil {
		return Counters{}, err
	}
	c := merge(rs)
	if c.Failed > 0 {
		r.notef("%d of %d clients failed to connect%s", c.Failed, want, joinSamples(c.Samples))
	}
	if want > 0 && c.Up == 0 {
		return c.Counters, fmt.Errorf("%w%s", errWorkersFailed, joinSamples(c.Samples))
	}
	return c.Counters, nil
}

// close ends the progress line and the workers.
func (r *run) close() {
	close(r.stop)
	r.wg.Wait()
	r.pool.close()
}

// sample reads the server's and the clients' CPU and memory now.
func (r *run) sample() sample {
	pids := append(r.pool.pids(), os.Getpid())
	return takeSample(r.env.Target.Pid, dedupe(pids))
}

func dedupe(pids []int) []int {
	seen := map[int]bool{}
	out := pids[:0]
	for _, p := range pids {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// profile starts a server CPU profile of the next d, when asked for.
func (r *run) profile(ctx context.Context, d time.Duration) {
	path := r.env.Profile
	if path == "" {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.env.Target.Profile(ctx, d, path); err != nil {
			fmt.Fprintln(r.env.log(), "profile:", err)
			return
		}
		fmt.Fprintln(r.env.log(), "server CPU profile written to", path)
	}()
}

// markCounters reads the server's counters at the start of the measured
// phase.
func (r *run) markCounters(ctx context.Context) {
	r.counters, _ = r.env.Target.Counters(ctx)
}

// counterDelta is how much each server counter changed since
// markCounters, the unchanged ones left out; nil without readings.
func (r *run) counterDelta(ctx context.Context) map[string]float64 {
	if r.counters == nil {
		return nil
	}
	now, err := r.env.Target.Counters(ctx)
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for k, v := range now {
		if d := v - r.counters[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// common fills the fields every result has; u is the measured phase and
// counters the server's counter deltas over it.
func (r *run) common(u Usage, counters map[string]float64) Common {
	c := Common{
		Scenario: r.name, Time: r.started.UTC().Format(time.RFC3339), Adapter: r.env.Adapter.Name,
		URL: r.env.Adapter.URL, StartedServer: r.env.Target.Started, ServerArgs: r.env.Target.Args,
		ClientWorkers: len(r.pool.workers), ClientSpin: r.spin.String(), Usage: u, ServerCounters: counters, Notes: r.notes,
	}
	if c.Adapter == "" {
		c.Adapter = "huddle"
	}
	c.Notes = append(c.Notes, r.env.boundNotes(u)...)
	return c
}

// boundNotes warns when the clients' core, or the server's, was nearly
// full, or other processes were busy on the machine.
func (e *Env) boundNotes(u Usage) []string {
	var out []string
	cores := e.ClientCores
	if cores <= 0 {
		cores = len(u.CoreBusy)
	}
	if cores > 0 && u.ClientCPU >= 0.85*float64(cores) {
		out = append(out, fmt.Sprintf("clients used %.2f of %d core(s): they may be what this run measures", u.ClientCPU, cores))
	}
	if u.ServerMeasured && u.ServerCPU >= 0.9 && e.Target.Started {
		out = append(out, fmt.Sprintf("server used %.2f core(s): saturated", u.ServerCPU))
	}
	// /proc times tick at 10ms: short phases say nothing about others.
	if len(u.CoreBusy) > 0 && u.Seconds >= 2 {
		var busy float64
		for i, b := range u.CoreBusy {
			busy += b
			if i < len(u.CoreIRQ) {
				busy -= u.CoreIRQ[i]
			}
		}
		other := busy - u.ClientCPU - u.BackendCPU
		if u.ServerMeasured {
			other -= u.ServerCPU
		}
		if other > 0.25 {
			out = append(out, fmt.Sprintf("other processes used about %.2f core(s) meanwhile: figures are noisy", other))
		}
	}
	return out
}

// progressLine prints the run's state twice a second on a terminal, or
// every 5 seconds as plain lines.
func (r *run) progressLine() {
	defer r.wg.Done()
	w := r.env.Progress
	tty := isTerminal(w)
	every := progressEvery
	if !tty {
		every = 5 * time.Second
	}
	tk := time.NewTicker(every)
	defer tk.Stop()
	prev, prevS := Counters{}, r.sample()
	for {
		select {
		case <-r.stop:
			if tty {
				fmt.Fprint(w, "\r\x1b[K")
			}
			return
		case <-tk.C:
		}
		c, p99, _ := r.pool.progress()
		s := r.sample()
		u := s.since(prevS)
		dt := u.Seconds
		var b strings.Builder
		fmt.Fprintf(&b, "[%s %s] %5.1fs up %d", r.name, *r.label.Load(), time.Since(r.started).Seconds(), c.Up)
		if c.Failed > 0 {
			fmt.Fprintf(&b, " failed %d", c.Failed)
		}
		if c.Sent > 0 {
			fmt.Fprintf(&b, " sent %s (%s/s)", si(float64(c.Sent)), si(float64(c.Sent-prev.Sent)/dt))
		}
		fmt.Fprintf(&b, " recv %s (%s/s)", si(float64(c.Recv)), si(float64(c.Recv-prev.Recv)/dt))
		if p99 > 0 {
			fmt.Fprintf(&b, " p99 %.1fms", float64(p99)/1e6)
		}
		if n := sumCodes(c.Codes) + sumCodes(c.Closes) + sumCodes(c.SlowCloses); n > 0 {
			fmt.Fprintf(&b, " err/close %d", n)
		}
		if u.ServerMeasured {
			fmt.Fprintf(&b, " | server %.2f cpu %s", u.ServerCPU, mib(u.ServerRSS))
		}
		fmt.Fprintf(&b, " | clients %.2f cpu", u.ClientCPU)
		if tty {
			fmt.Fprintf(w, "\r\x1b[K%s", b.String())
		} else {
			fmt.Fprintln(w, b.String())
		}
		prev, prevS = c, s
	}
}

func sumCodes(m map[int]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// si formats v with a k/M suffix.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

// sample is the server's and the clients' CPU and memory at one time.
type sample struct {
	at       time.Time
	server   ProcStats
	serverOK bool
	client   time.Duration
	cores    CoreTimes
}

func takeSample(serverPid int, clientPids []int) sample {
	s := sample{at: time.Now()}
	if serverPid > 0 {
		st, err := ReadProc(serverPid)
		s.server, s.serverOK = st, err == nil
	}
	for _, p := range clientPids {
		if st, err := ReadProc(p); err == nil {
			s.client += st.CPUTime
		}
	}
	s.cores, _ = ReadCores()
	return s
}

// Usage is the CPU and memory of the server and the clients over a phase
// of a run. CPU is in cores: CPU seconds per second.
type Usage struct {
	Seconds float64 `json:"seconds"`
	// ServerMeasured is false when the server's /proc was not readable (it
	// runs elsewhere and no pid was given); its fields are then zero.
	ServerMeasured bool    `json:"server_measured"`
	ServerCPU      float64 `json:"server_cpu_cores"`
	ServerRSS      int64   `json:"server_rss_bytes"` // at the end of the phase
	// ClientCPU is every worker process's CPU plus the coordinator's.
	ClientCPU float64 `json:"client_cpu_cores"`
	// BackendCPU is the RPC backend's CPU (Env.Backend with a pid), where
	// a scenario reads it; not part of ClientCPU.
	BackendCPU float64 `json:"backend_cpu_cores,omitempty"`
	// CoreBusy is how busy each core of the machine was, by anything;
	// CoreIRQ the part of it in interrupts and softirqs (loopback traffic,
	// charged to no process).
	CoreBusy []float64 `json:"core_busy,omitempty"`
	CoreIRQ  []float64 `json:"core_irq,omitempty"`
}

// since is the usage between an earlier sample a and s.
func (s sample) since(a sample) Usage {
	u := Usage{Seconds: round3(s.at.Sub(a.at).Seconds())}
	dt := s.at.Sub(a.at).Seconds()
	if dt <= 0 {
		return u
	}
	if s.serverOK && a.serverOK {
		u.ServerMeasured = true
		u.ServerCPU = round3((s.server.CPUTime - a.server.CPUTime).Seconds() / dt)
		u.ServerRSS = s.server.RSS
	}
	u.ClientCPU = round3((s.client - a.client).Seconds() / dt)
	u.CoreBusy, u.CoreIRQ = BusyFractions(a.cores, s.cores)
	return u
}
