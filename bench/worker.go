package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// RunWorker is a worker process's body: it reads its Task from the first
// line of in, connects its clients, then obeys commands from in and writes
// reports to out until in ends or ctx is done. cmd/huddle-bench runs it in
// each client process; tests run it in-process.
func RunWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	if !sc.Scan() {
		return errors.New("bench: worker: no task on stdin")
	}
	var t Task
	if err := json.Unmarshal(sc.Bytes(), &t); err != nil {
		return fmt.Errorf("bench: worker: task: %w", err)
	}
	ad, err := NewAdapter(t.Adapter)
	if err != nil {
		return err
	}
	reactorSpin.Store(int64(t.Shape.Spin))
	if t.Scenario == "soak" {
		return runSoakWorker(ctx, t, ad, sc, out)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := newWorker(t, ad, out)
	defer w.closeAll()

	cmds := make(chan command)
	go func() {
		defer close(cmds)
		for sc.Scan() {
			var c command
			if json.Unmarshal(sc.Bytes(), &c) == nil {
				select {
				case cmds <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	go w.progress(ctx)
	go w.pace(ctx)

	if !t.Shape.Lazy {
		w.dialAll(ctx)
	}
	w.send(report{Ev: evReady, Counters: w.counters(), Samples: w.samples()})
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c, ok := <-cmds:
			if !ok {
				return nil
			}
			w.obey(ctx, c)
		}
	}
}

// worker holds one process's clients and what they measured.
type worker struct {
	t  Task
	ad Adapter

	outMu sync.Mutex
	out   *json.Encoder

	mu      sync.Mutex // guards clients, senders, errSamples
	clients []*client
	senders []*client
	errs    []string

	lat, win, join, leave, dial *AtomicHistogram
	welcome                     *AtomicHistogram // dial to the server's welcome (the adapter's Dial returning)
	seq                         *SeqRecorder

	up, failed, sent, sendErrs, unsent, recv, cycles, unmatched atomic.Int64

	codeMu     sync.Mutex // guards codes, closes, slowCloses
	codes      map[int]int64
	closes     map[int]int64
	slowCloses map[int]int64

	rate     atomic.Uint64 // float64 bits: sends per second
	free     chan *client  // presence: churners not joined
	closing  atomic.Bool
	stamp    []byte // pacer goroutine only
	churnSeq int64  // pacer goroutine only
}

// client is one connection and its part in the scenario.
type client struct {
	w     *worker
	idx   int
	plan  plan
	conn  Conn
	state atomic.Int32 // clientNew, clientUp (counted in up), clientEnded
	// left maps a churner (by client index) to the sequence number and
	// planned time of its leave, from the join this client saw. Reader
	// goroutine only.
	left map[int]pendingLeave
}

const (
	clientNew int32 = iota
	clientUp
	clientEnded
)

type pendingLeave struct {
	seq uint64
	at  int64
}

func newWorker(t Task, ad Adapter, out io.Writer) *worker {
	w := &worker{
		t: t, ad: ad, out: json.NewEncoder(out),
		lat: NewAtomicHistogram(), win: NewAtomicHistogram(),
		join: NewAtomicHistogram(), leave: NewAtomicHistogram(), dial: NewAtomicHistogram(), welcome: NewAtomicHistogram(),
		codes: map[int]int64{}, closes: map[int]int64{}, slowCloses: map[int]int64{},
	}
	if t.Shape.Seqs > 0 {
		w.seq = NewSeqRecorder(t.Shape.Seqs)
	}
	if t.Scenario == "presence" {
		w.free = make(chan *client, t.Count)
	}
	return w
}

func (w *worker) send(r report) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	_ = w.out.Encode(r)
}

func (w *worker) obey(ctx context.Context, c command) {
	switch c.Cmd {
	case cmdRate:
		w.rate.Store(math.Float64bits(c.Rate))
	case cmdDial:
		if c.Concurrency > 0 {
			w.t.Concurrency = c.Concurrency
		}
		w.dialAll(ctx)
		w.send(report{Ev: evDialed, Counters: w.counters(), Dial: w.dial.Take(), Welcome: w.welcome.Take(), Samples: w.samples()})
	case cmdPause, cmdResume:
		w.mu.Lock()
		for _, cl := range w.clients {
			if cl.plan.kind == kindSlow {
				cl.conn.Pause(c.Cmd == cmdPause)
			}
		}
		w.mu.Unlock()
	case cmdCollect:
		r := report{Ev: evStats, Counters: w.counters(), Lat: w.lat.Take(), Join: w.join.Take(),
			Leave: w.leave.Take(), Dial: w.dial.Take(), Samples: w.samples()}
		if c.Final && w.seq != nil {
			r.Seq = w.seq.Stats()
		}
		w.send(r)
	}
}

func (w *worker) counters() Counters {
	c := Counters{
		Up: w.up.Load(), Failed: w.failed.Load(), Sent: w.sent.Load(), SendErrors: w.sendErrs.Load(),
		Unsent: w.unsent.Load(), Recv: w.recv.Load(), Cycles: w.cycles.Load(), Unmatched: w.unmatched.Load(),
	}
	if w.seq != nil {
		c.Overflow = w.seq.Overflow()
	}
	w.codeMu.Lock()
	c.Codes = addCodes(nil, w.codes)
	c.Closes = addCodes(nil, w.closes)
	c.SlowCloses = addCodes(nil, w.slowCloses)
	w.codeMu.Unlock()
	return c
}

func (w *worker) samples() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errs...)
}

func (w *worker) noteErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) < 5 {
		w.errs = append(w.errs, err.Error())
	}
}

// progress reports running totals and the last window's p99.
func (w *worker) progress(ctx context.Context) {
	tk := time.NewTicker(progressEvery)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			h := w.win.Take()
			w.send(report{Ev: evProgress, Counters: w.counters(), WinP99: h.Percentile(99), WinN: h.Count()})
		}
	}
}

// dialAll connects the task's clients, Concurrency at a time.
func (w *worker) dialAll(ctx context.Context) {
	conc := max(w.t.Concurrency, 1)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for k := 0; k < w.t.Count; k++ {
		i := w.t.First + k
		cl := &client{w: w, idx: i, plan: w.t.plan(i)}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w.open(ctx, cl)
		}()
	}
	wg.Wait()
}

func (w *worker) open(ctx context.Context, cl *client) {
	wait := w.t.Shape.DialWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	o := DialOptions{User: userName(cl.idx)}
	if n := len(w.t.Locals); n > 0 {
		o.Local = net.ParseIP(w.t.Locals[cl.idx%n])
	}
	if cl.plan.kind == kindSlow {
		o.RecvBuf = w.t.Shape.RecvBuf
	}
	start := time.Now()
	conn, err := w.ad.Dial(dctx, o, cl.handle)
	if err == nil {
		w.welcome.Record(int64(time.Since(start)))
		if err = conn.Subscribe(dctx, cl.plan.stream, cl.plan.sub); err != nil {
			conn.Close()
			err = fmt.Errorf("subscribe: %w", err)
		}
	}
	if err != nil {
		w.failed.Add(1)
		w.noteErr(err)
		return
	}
	cl.conn = conn
	if !cl.state.CompareAndSwap(clientNew, clientUp) {
		w.failed.Add(1)
		w.noteErr(errors.New("closed right after subscribing"))
		return
	}
	w.up.Add(1)
	w.dial.Record(int64(time.Since(start)))
	w.mu.Lock()
	w.clients = append(w.clients, cl)
	switch cl.plan.kind {
	case kindSender:
		w.senders = append(w.senders, cl)
	case kindChurner:
		w.free <- cl
	}
	w.mu.Unlock()
}

// handle records what client cl receives. It runs on cl's reader goroutine.
func (cl *client) handle(e *Event) {
	w := cl.w
	switch e.Kind {
	case EventPub, EventWhisper:
		w.recv.Add(1)
		if cl.plan.kind == kindSlow {
			return
		}
		if seq, sent, _, ok := ParseStamp(e.Data); ok {
			lat := e.At - sent
			w.lat.Record(lat)
			w.win.Record(lat)
			if w.seq != nil {
				w.seq.Record(seq, lat)
			}
		}
	case EventJoin:
		seq, sent, leaveAt, ok := ParseStamp(e.Data)
		j, uok := userIndex(e.User)
		if !ok || !uok {
			return // a static member: no stamp
		}
		w.recv.Add(1)
		lat := e.At - sent
		w.join.Record(lat)
		w.win.Record(lat)
		if w.seq != nil {
			w.seq.Record(seq, lat)
		}
		if cl.left == nil {
			cl.left = make(map[int]pendingLeave)
		}
		cl.left[j] = pendingLeave{seq: seq + 1, at: leaveAt}
	case EventLeave:
		j, ok := userIndex(e.User)
		if !ok {
			return
		}
		p, ok := cl.left[j]
		if !ok {
			if j >= w.t.Shape.Streams*w.t.Shape.Members { // a churner whose join came before we subscribed
				w.unmatched.Add(1)
			}
			return
		}
		delete(cl.left, j)
		w.recv.Add(1)
		lat := e.At - p.at
		w.leave.Record(lat)
		w.win.Record(lat)
		if w.seq != nil {
			w.seq.Record(p.seq, lat)
		}
	case EventError:
		w.codeMu.Lock()
		w.codes[e.Code]++
		w.codeMu.Unlock()
	case EventClosed:
		if cl.state.Swap(clientEnded) != clientUp || w.closing.Load() {
			return
		}
		w.up.Add(-1)
		w.codeMu.Lock()
		if cl.plan.kind == kindSlow {
			w.slowCloses[e.Code]++
		} else {
			w.closes[e.Code]++
		}
		w.codeMu.Unlock()
	}
}

// pace sends at the commanded rate, on an open-loop schedule: each send is
// stamped with the time it was due, not when it went out, so a sender that
// falls behind shows as latency instead of hiding it. Over a second behind,
// sends are skipped and counted as unsent.
func (w *worker) pace(ctx context.Context) {
	var (
		k        int64
		next     time.Time
		lastRate float64
	)
	for ctx.Err() == nil {
		rate := math.Float64frombits(w.rate.Load())
		if rate <= 0 {
			lastRate = 0
			time.Sleep(5 * time.Millisecond)
			continue
		}
		now := time.Now()
		if rate != lastRate {
			lastRate, next = rate, now
		}
		interval := time.Duration(float64(time.Second) / rate)
		if d := next.Sub(now); d > 0 {
			time.Sleep(min(d, 10*time.Millisecond))
			continue
		}
		if behind := now.Sub(next); behind > time.Second {
			skip := int64(behind/interval) - int64(time.Second/2/interval)
			w.unsent.Add(skip)
			next = next.Add(time.Duration(skip) * interval)
		}
		for !next.After(now) && ctx.Err() == nil {
			w.fire(k, next)
			k++
			next = next.Add(interval)
		}
	}
}

// fire makes the k-th paced send, due at at.
func (w *worker) fire(k int64, at time.Time) {
	if w.t.Scenario == "presence" {
		w.churn(at)
		return
	}
	w.mu.Lock()
	n := len(w.senders)
	var cl *client
	if n > 0 {
		cl = w.senders[k%int64(n)]
	}
	w.mu.Unlock()
	if cl == nil {
		w.unsent.Add(1)
		return
	}
	w.stamp = AppendStamp(w.stamp[:0], uint64(k), at.UnixNano(), 0, w.t.Shape.Size)
	var err error
	switch w.t.Scenario {
	case "rooms":
		err = cl.conn.Publish(cl.plan.stream, w.stamp)
	case "whisper":
		err = cl.conn.Whisper(cl.plan.stream, "w", w.stamp)
	case "cursors":
		err = cl.conn.Whisper(cl.plan.stream, "cursor", w.stamp)
	}
	w.count(err)
}

func (w *worker) count(err error) {
	if err != nil {
		if w.sendErrs.Add(1) == 1 {
			w.noteErr(fmt.Errorf("send: %w", err))
		}
		return
	}
	w.sent.Add(1)
}

// churn starts one presence cycle on a free churner: join now with a state
// that carries the join's and the leave's sequence numbers and the planned
// leave time, then leave at that time and rest before the next cycle.
func (w *worker) churn(at time.Time) {
	var cl *client
	select {
	case cl = <-w.free:
	default:
		w.unsent.Add(1)
		return
	}
	hold := max(w.t.Shape.Hold, 10*time.Millisecond)
	leaveAt := at.Add(hold)
	// Joins have even sequence numbers, the leave the next odd one; workers
	// interleave so that numbers stay dense.
	seq := uint64(2 * (w.churnSeq*int64(w.t.Workers) + int64(w.t.Worker)))
	w.churnSeq++
	w.cycles.Add(1)
	w.stamp = AppendStamp(w.stamp[:0], seq, at.UnixNano(), leaveAt.UnixNano(), w.t.Shape.Size)
	w.count(cl.conn.Join(cl.plan.stream, w.stamp))
	time.AfterFunc(time.Until(leaveAt), func() {
		w.count(cl.conn.Leave(cl.plan.stream))
		time.AfterFunc(max(hold/2, 100*time.Millisecond), func() { w.free <- cl })
	})
}

func (w *worker) closeAll() {
	w.closing.Store(true)
	w.mu.Lock()
	cls := w.clients
	w.mu.Unlock()
	for _, cl := range cls {
		cl.conn.Close()
	}
	for _, cl := range cls {
		select {
		case <-cl.conn.Done():
		case <-time.After(2 * time.Second):
			return
		}
	}
}
