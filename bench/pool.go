package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Launcher starts worker processes (or their stand-ins).
type Launcher interface {
	// Launch starts a worker and hands it t. The worker's reports come on
	// Out; closing In ends it.
	Launch(ctx context.Context, t Task) (*WorkerProc, error)
}

// WorkerProc is a running worker.
type WorkerProc struct {
	Pid  int // its process, for /proc CPU readings
	In   io.WriteCloser
	Out  io.Reader
	Wait func() error // waits for it to end
	Kill func()
}

// ProcLauncher runs "Exe Args..." as a process per worker, pinned with
// taskset to CPUs when set. The process must call RunWorker on its stdin and
// stdout (cmd/huddle-bench does, as "huddle-bench worker").
type ProcLauncher struct {
	Exe    string
	Args   []string
	CPUs   string    // taskset CPU list, e.g. "1"; empty runs unpinned
	Stderr io.Writer // the workers' stderr; nil discards it
}

var _ Launcher = (*ProcLauncher)(nil)

// Launch starts a worker process.
func (l *ProcLauncher) Launch(ctx context.Context, t Task) (*WorkerProc, error) {
	name, args := l.Exe, l.Args
	if l.CPUs != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("bench: pinning clients to CPUs %s: %w", l.CPUs, err)
		}
		name, args = ts, append([]string{"-c", l.CPUs, l.Exe}, l.Args...)
	}
	cmd := exec.Command(name, args...)
	cmd.Stderr = l.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if err := writeLine(in, t); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	return &WorkerProc{
		Pid: cmd.Process.Pid, In: in, Out: out, Wait: cmd.Wait,
		Kill: func() { _ = cmd.Process.Kill() },
	}, nil
}

// InProcLauncher runs workers as goroutines of this process (tests, or a
// quick look without extra processes). Their CPU is this process's.
type InProcLauncher struct{}

var _ Launcher = InProcLauncher{}

// Launch starts a worker goroutine.
func (InProcLauncher) Launch(ctx context.Context, t Task) (*WorkerProc, error) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := RunWorker(ctx, inR, outW)
		outW.CloseWithError(io.EOF)
		inR.Close()
		done <- err
	}()
	if err := writeLine(inW, t); err != nil {
		cancel()
		return nil, err
	}
	var once sync.Once
	var werr error
	return &WorkerProc{
		Pid: os.Getpid(), In: inW, Out: outR,
		Wait: func() error {
			once.Do(func() { werr = <-done; cancel() })
			return werr
		},
		Kill: cancel,
	}, nil
}

func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// pool is the coordinator's view of its workers.
type pool struct {
	workers []*poolWorker
	log     io.Writer
}

type poolWorker struct {
	proc    *WorkerProc
	task    Task
	inMu    sync.Mutex
	reports chan report            // everything but progress and logs
	last    atomic.Pointer[report] // latest progress
	ended   chan struct{}
}

// startPool launches a worker per task and starts reading their reports.
func startPool(ctx context.Context, l Launcher, tasks []Task, log io.Writer) (*pool, error) {
	p := &pool{log: log}
	for _, t := range tasks {
		wp, err := l.Launch(ctx, t)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("bench: start worker %d: %w", t.Worker, err)
		}
		pw := &poolWorker{proc: wp, task: t, reports: make(chan report, 64), ended: make(chan struct{})}
		p.workers = append(p.workers, pw)
		go pw.readReports(log)
	}
	return p, nil
}

func (pw *poolWorker) readReports(log io.Writer) {
	defer close(pw.ended)
	sc := bufio.NewScanner(pw.proc.Out)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var r report
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			fmt.Fprintf(log, "worker %d: %s\n", pw.task.Worker, sc.Text())
			continue
		}
		switch r.Ev {
		case evProgress:
			pw.last.Store(&r)
		default:
			c := r.Counters
			pw.last.Store(&report{Ev: evProgress, Counters: c})
			pw.reports <- r
		}
	}
}

// broadcast sends c to every worker.
func (p *pool) broadcast(c command) error {
	for _, w := range p.workers {
		if err := w.command(c); err != nil {
			return err
		}
	}
	return nil
}

func (pw *poolWorker) command(c command) error {
	pw.inMu.Lock()
	defer pw.inMu.Unlock()
	if err := writeLine(pw.proc.In, c); err != nil {
		return fmt.Errorf("bench: worker %d: %w", pw.task.Worker, err)
	}
	return nil
}

// wait returns the next report of kind ev from every worker.
func (p *pool) wait(ctx context.Context, ev string) ([]report, error) {
	out := make([]report, 0, len(p.workers))
	for _, w := range p.workers {
		for {
			var r report
			select {
			case r = <-w.reports:
			case <-w.ended:
				select {
				case r = <-w.reports:
				default:
					return nil, fmt.Errorf("bench: worker %d ended early (see its stderr above)", w.task.Worker)
				}
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if r.Ev == ev {
				out = append(out, r)
				break
			}
		}
	}
	return out, nil
}

// collected is every worker's stats report added up.
type collected struct {
	Counters
	Lat, Join, Leave, Dial Histogram
	Welcome                Histogram
	Seq                    SeqTable
	Samples                []string
}

func merge(reports []report) *collected {
	c := &collected{Seq: SeqTable{}}
	for _, r := range reports {
		c.Counters.Add(r.Counters)
		c.Lat.Merge(r.Lat)
		c.Join.Merge(r.Join)
		c.Leave.Merge(r.Leave)
		c.Dial.Merge(r.Dial)
		c.Welcome.Merge(r.Welcome)
		c.Seq.Add(r.Seq)
		for _, s := range r.Samples {
			if len(c.Samples) < 5 {
				c.Samples = append(c.Samples, s)
			}
		}
	}
	return c
}

// collect asks every worker for its stats since the last collect.
func (p *pool) collect(ctx context.Context, final bool) (*collected, error) {
	rs, err := p.collectReports(ctx, final)
	if err != nil {
		return nil, err
	}
	return merge(rs), nil
}

// collectReports is collect without the merge: one report per worker, in
// worker order.
func (p *pool) collectReports(ctx context.Context, final bool) ([]report, error) {
	if err := p.broadcast(command{Cmd: cmdCollect, Final: final}); err != nil {
		return nil, err
	}
	return p.wait(ctx, evStats)
}

// setRates gives worker i rates[i] sends per second.
func (p *pool) setRates(rates []float64) error {
	for i, w := range p.workers {
		if err := w.command(command{Cmd: cmdRate, Rate: rates[i]}); err != nil {
			return err
		}
	}
	return nil
}

// progress adds up the workers' latest running totals; p99 is the largest
// of their last windows' p99.
func (p *pool) progress() (c Counters, p99 int64, n uint64) {
	for _, w := range p.workers {
		if r := w.last.Load(); r != nil {
			c.Add(r.Counters)
			p99 = max(p99, r.WinP99)
			n += r.WinN
		}
	}
	return c, p99, n
}

// pids lists the worker processes, each once.
func (p *pool) pids() []int {
	seen := map[int]bool{}
	var out []int
	for _, w := range p.workers {
		if !seen[w.proc.Pid] {
			seen[w.proc.Pid] = true
			out = append(out, w.proc.Pid)
		}
	}
	return out
}

// close ends every worker: closing stdin lets them close their clients and
// exit; those still there after a while are killed.
func (p *pool) close() {
	for _, w := range p.workers {
		w.inMu.Lock()
		_ = w.proc.In.Close()
		w.inMu.Unlock()
	}
	deadline := time.After(10 * time.Second)
	for _, w := range p.workers {
		done := make(chan struct{})
		go func() { _ = w.proc.Wait(); close(done) }()
		select {
		case <-done:
		case <-deadline:
			w.proc.Kill()
			<-done
		}
	}
}

// split divides n clients over workers as evenly as possible: the first
// index and count of each.
func split(n, workers int) (first, count []int) {
	workers = max(min(workers, n), 1)
	for w := 0; w < workers; w++ {
		lo, hi := n*w/workers, n*(w+1)/workers
		first, count = append(first, lo), append(count, hi-lo)
	}
	return first, count
}

// errWorkersFailed is returned when no client could connect.
var errWorkersFailed = errors.New("bench: no client connected")

// joinSamples formats error samples for a message.
func joinSamples(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return " (e.g. " + strings.Join(s, "; ") + ")"
}
