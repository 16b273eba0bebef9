package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SoakShape lays out the soak scenario's clients (Shape.Soak). Clients are
// numbered globally in this order: one publisher per publication stream
// (the bulk stream last), Subscribers, Slow readers, whisperers
// (WhisperGroups groups of WhisperGroup), then per presence stream its
// Watchers, then per presence stream its Churners.
type SoakShape struct {
	Prefix string `json:"prefix"` // start of every stream name, unique per run

	Streams int     `json:"streams"` // publication streams every subscriber reads
	Rate    float64 `json:"rate"`    // publications per second on each
	Size    int     `json:"size"`
	// The bulk stream carries big publications to the slow readers (so that
	// they fill the server's socket buffer and queue in a pause) and to the
	// first BulkSubs subscribers; none when BulkRate is 0.
	BulkRate float64 `json:"bulk_rate,omitempty"`
	BulkSize int     `json:"bulk_size,omitempty"`
	BulkSubs int     `json:"bulk_subs,omitempty"`

	Subscribers int `json:"subscribers"`
	// DropEvery: subscribers 0, DropEvery, 2·DropEvery… drop their
	// connection about every ReconnectEvery, stay away up to Offline, and
	// come back with recovery; 0: none.
	DropEvery      int           `json:"drop_every,omitempty"`
	ReconnectEvery time.Duration `json:"reconnect_every,omitempty"`
	Offline        time.Duration `json:"offline,omitempty"`

	// Slow readers stop reading for SlowPause about every SlowEvery, with
	// a RecvBuf socket buffer.
	Slow      int           `json:"slow,omitempty"`
	SlowEvery time.Duration `json:"slow_every,omitempty"`
	SlowPause time.Duration `json:"slow_pause,omitempty"`
	RecvBuf   int           `json:"recv_buf,omitempty"`

	WhisperGroups int     `json:"whisper_groups,omitempty"`
	WhisperGroup  int     `json:"whisper_group,omitempty"`
	WhisperHz     float64 `json:"whisper_hz,omitempty"` // per whisperer

	// Churners open a connection, join presence, stay about Hold, leave
	// (every other cycle with a leave message, else by dropping the
	// connection), and rest about Rest. Watchers see their joins and leaves.
	PresenceStreams int           `json:"presence_streams,omitempty"`
	Watchers        int           `json:"watchers,omitempty"`
	Churners        int           `json:"churners,omitempty"`
	Hold            time.Duration `json:"hold,omitempty"`
	Rest            time.Duration `json:"rest,omitempty"`
}

type soakKind uint8

const (
	kindSoakPublisher soakKind = iota
	kindSoakSubscriber
	kindSoakSlow
	kindSoakWhisperer
	kindSoakWatcher
	kindSoakChurner
)

// pubStreams counts the publication streams, the bulk one included.
func (s *SoakShape) pubStreams() int {
	if s.BulkRate > 0 {
		return s.Streams + 1
	}
	return s.Streams
}

func (s *SoakShape) kinds() [6]int {
	return [6]int{s.pubStreams(), s.Subscribers, s.Slow, s.WhisperGroups * s.WhisperGroup,
		s.PresenceStreams * s.Watchers, s.PresenceStreams * s.Churners}
}

// total counts the clients.
func (s *SoakShape) total() int {
	n := 0
	for _, k := range s.kinds() {
		n += k
	}
	return n
}

// layout says what client i is and its index among its kind.
func (s *SoakShape) layout(i int) (soakKind, int) {
	for k, n := range s.kinds() {
		if i < n {
			return soakKind(k), i
		}
		i -= n
	}
	return kindSoakChurner, -1
}

// pubStream names publication stream k (k == Streams: the bulk stream).
func (s *SoakShape) pubStream(k int) string {
	if k == s.Streams {
		return s.Prefix + ":bulk"
	}
	return s.Prefix + ":pub:" + strconv.Itoa(k)
}

func (s *SoakShape) whisperStream(g int) string  { return s.Prefix + ":w:" + strconv.Itoa(g) }
func (s *SoakShape) presenceStream(p int) string { return s.Prefix + ":p:" + strconv.Itoa(p) }

// Commands of the soak scenario (besides cmdCollect).
const (
	cmdSoakStart = "soak-start" // start the traffic
	cmdSoakStop  = "soak-stop"  // stop it; everyone reconnects and catches up
)

// evSoakSettled answers cmdSoakStop once every subscriber is connected and
// reading, and no churner is inside a cycle.
const evSoakSettled = "soak-settled"

// SoakCounts are a soak worker's totals (report.Soak). Deliveries count
// publications per subscription; Expected and Lost are known only in the
// final report, against the streams' final offsets.
type SoakCounts struct {
	Published map[string]int64 `json:"published,omitempty"` // by stream: publications sent
	PubErrors int64            `json:"pub_errors"`          // error replies to publishers

	Expected      int64 `json:"expected"`       // offsets each subscription should have had, summed
	Delivered     int64 `json:"delivered"`      // distinct offsets delivered, summed
	Lost          int64 `json:"lost"`           // expected offsets never delivered
	Duplicated    int64 `json:"duplicated"`     // offsets delivered again
	OutOfOrder    int64 `json:"out_of_order"`   // delivered after a later one, or at or below the start
	Mismatched    int64 `json:"mismatched"`     // payload not the one published at that offset, or wrong epoch
	RecoveredPubs int64 `json:"recovered_pubs"` // missed ones delivered after a resubscribe (in its reply or after it)
	Behind        int64 `json:"behind"`         // subscriptions short of the final offset at the count

	Drops        int64 `json:"drops"`         // connections dropped on purpose
	Cuts         int64 `json:"cuts"`          // subscriber connections the server ended
	Reconnects   int64 `json:"reconnects"`    // subscribers that connected again
	Recoveries   int64 `json:"recoveries"`    // subscriptions recovered (recovered: true)
	NotRecovered int64 `json:"not_recovered"` // recovery refused (recovered: false)
	EpochChanges int64 `json:"epoch_changes"`
	SlowPauses   int64 `json:"slow_pauses"`
	Cut4008      int64 `json:"cut_4008"` // subscriber connections that ended with 4008

	WhispersSent    int64      `json:"whispers_sent"`
	WhispersRecv    int64      `json:"whispers_received"`
	WhisperDisorder int64      `json:"whisper_disorder"` // a sender's whisper at or below one already received
	WhisperLat      *Histogram `json:"whisper_lat,omitempty"`

	Cycles          int64 `json:"cycles"`           // churner joins the server confirmed
	JoinsSeen       int64 `json:"joins_seen"`       // by watchers
	LeavesSeen      int64 `json:"leaves_seen"`      // by watchers, matching a join
	OpenJoins       int64 `json:"open_joins"`       // joins seen without their leave (final report)
	UnmatchedLeaves int64 `json:"unmatched_leaves"` // leaves of members never seen joined: a join and its leave in one diff

	Pending int64 `json:"pending"` // subscribers not connected or paused, churners in a cycle
}

func (s *SoakCounts) add(o *SoakCounts) {
	if o == nil {
		return
	}
	for k, v := range o.Published {
		if s.Published == nil {
			s.Published = map[string]int64{}
		}
		s.Published[k] += v
	}
	s.PubErrors += o.PubErrors
	s.Expected += o.Expected
	s.Delivered += o.Delivered
	s.Lost += o.Lost
	s.Duplicated += o.Duplicated
	s.OutOfOrder += o.OutOfOrder
	s.Mismatched += o.Mismatched
	s.RecoveredPubs += o.RecoveredPubs
	s.Behind += o.Behind
	s.Drops += o.Drops
	s.Cuts += o.Cuts
	s.Reconnects += o.Reconnects
	s.Recoveries += o.Recoveries
	s.NotRecovered += o.NotRecovered
	s.EpochChanges += o.EpochChanges
	s.SlowPauses += o.SlowPauses
	s.Cut4008 += o.Cut4008
	s.WhispersSent += o.WhispersSent
	s.WhispersRecv += o.WhispersRecv
	s.WhisperDisorder += o.WhisperDisorder
	if o.WhisperLat != nil {
		if s.WhisperLat == nil {
			s.WhisperLat = &Histogram{}
		}
		s.WhisperLat.Merge(o.WhisperLat)
	}
	s.Cycles += o.Cycles
	s.JoinsSeen += o.JoinsSeen
	s.LeavesSeen += o.LeavesSeen
	s.OpenJoins += o.OpenJoins
	s.UnmatchedLeaves += o.UnmatchedLeaves
	s.Pending += o.Pending
}

// soakWorker holds one process's share of the soak clients.
type soakWorker struct {
	t  Task
	sh SoakShape
	ad Adapter

	outMu sync.Mutex
	out   *json.Encoder

	streamIdx map[string]int // publication stream name -> index

	start, stop           chan struct{}
	startOnce, stopOnce   sync.Once
	stopped               atomic.Bool
	dialSem               chan struct{} // first connects in flight
	lat, wlat             *AtomicHistogram
	pubs                  []*soakPub
	subs                  []*soakSub
	watchers              []*soakWatcher
	churners              []*soakChurner
	up, failed            atomic.Int64
	sent, sendErrs        atomic.Int64
	unsent, recv          atomic.Int64
	pubErrors, drops      atomic.Int64
	cuts, reconnects      atomic.Int64
	recoveries, notRecov  atomic.Int64
	epochChanges, pauses  atomic.Int64
	cut4008, mismatched   atomic.Int64
	recoveredPubs         atomic.Int64
	wSent, wRecv, wDisord atomic.Int64
	cycles                atomic.Int64

	mu     sync.Mutex // guards errs, codes, closes
	errs   []string
	codes  map[int]int64
	closes map[int]int64
}

// runSoakWorker is RunWorker for the soak scenario: it connects the task's
// clients, reports ready, and runs the traffic between cmdSoakStart and
// cmdSoakStop; cmdCollect (final, with the streams' tops) counts what each
// subscription lost.
func runSoakWorker(ctx context.Context, t Task, ad Adapter, sc *bufio.Scanner, out io.Writer) error {
	if t.Shape.Soak == nil {
		return errors.New("bench: soak worker: no soak shape")
	}
	w := &soakWorker{
		t: t, sh: *t.Shape.Soak, ad: ad, out: json.NewEncoder(out),
		start: make(chan struct{}), stop: make(chan struct{}),
		dialSem: make(chan struct{}, max(t.Concurrency, 1)),
		lat:     NewAtomicHistogram(), wlat: NewAtomicHistogram(),
		streamIdx: map[string]int{}, codes: map[int]int64{}, closes: map[int]int64{},
	}
	for k := 0; k < w.sh.pubStreams(); k++ {
		w.streamIdx[w.sh.pubStream(k)] = k
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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

	var wg, ready sync.WaitGroup
	for i := t.First; i < t.First+t.Count; i++ {
		kind, k := w.sh.layout(i)
		wg.Add(1)
		if kind != kindSoakChurner {
			ready.Add(1)
		}
		switch kind {
		case kindSoakPublisher:
			p := &soakPub{w: w, idx: i, k: k, stream: w.sh.pubStream(k)}
			p.rate, p.size = w.sh.Rate, w.sh.Size
			if k == w.sh.Streams {
				p.rate, p.size = w.sh.BulkRate, w.sh.BulkSize
			}
			w.pubs = append(w.pubs, p)
			go func() { defer wg.Done(); p.run(ctx, ready.Done) }()
		case kindSoakSubscriber, kindSoakSlow:
			s := w.newSub(i, k, kind == kindSoakSlow)
			w.subs = append(w.subs, s)
			go func() { defer wg.Done(); s.run(ctx, ready.Done) }()
		case kindSoakWhisperer:
			h := &soakWhisperer{w: w, idx: i, stream: w.sh.whisperStream(k / max(w.sh.WhisperGroup, 1)), last: map[int64]uint64{}}
			go func() { defer wg.Done(); h.run(ctx, ready.Done) }()
		case kindSoakWatcher:
			v := &soakWatcher{w: w, idx: i, stream: w.sh.presenceStream(k / max(w.sh.Watchers, 1)), open: map[string]bool{}}
			w.watchers = append(w.watchers, v)
			go func() { defer wg.Done(); v.run(ctx, ready.Done) }()
		case kindSoakChurner:
			c := &soakChurner{w: w, idx: i, stream: w.sh.presenceStream(k / max(w.sh.Churners, 1))}
			w.churners = append(w.churners, c)
			go func() { defer wg.Done(); c.run(ctx) }()
		}
	}
	defer wg.Wait() // every client closes its connection when ctx ends
	defer cancel()

	readyC := make(chan struct{})
	go func() { ready.Wait(); close(readyC) }()
	select {
	case <-readyC:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.send(report{Ev: evReady, Counters: w.counters(), Samples: w.samples()})
	go w.progress(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c, ok := <-cmds:
			if !ok {
				return nil
			}
			switch c.Cmd {
			case cmdSoakStart:
				w.startOnce.Do(func() { close(w.start) })
			case cmdSoakStop:
				w.stopOnce.Do(func() { w.stopped.Store(true); close(w.stop) })
				go w.settled(ctx)
			case cmdCollect:
				go w.collect(ctx, c)
			}
		}
	}
}

func (w *soakWorker) send(r report) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	_ = w.out.Encode(r)
}

func (w *soakWorker) noteErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) < 8 {
		w.errs = append(w.errs, err.Error())
	}
}

func (w *soakWorker) samples() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errs...)
}

func (w *soakWorker) countCode(code int) {
	w.mu.Lock()
	w.codes[code]++
	w.mu.Unlock()
}

func (w *soakWorker) countClose(code int) {
	w.mu.Lock()
	w.closes[code]++
	w.mu.Unlock()
}

func (w *soakWorker) counters() Counters {
	c := Counters{Up: w.up.Load(), Failed: w.failed.Load(), Sent: w.sent.Load() + w.wSent.Load(), SendErrors: w.sendErrs.Load(),
		Unsent: w.unsent.Load(), Recv: w.recv.Load(), Cycles: w.cycles.Load()}
	w.mu.Lock()
	c.Codes = addCodes(nil, w.codes)
	c.Closes = addCodes(nil, w.closes)
	w.mu.Unlock()
	return c
}

// soakCounts is the running totals; the per-subscription figures come
// with the final collect.
func (w *soakWorker) soakCounts() *SoakCounts {
	s := &SoakCounts{
		PubErrors: w.pubErrors.Load(), Mismatched: w.mismatched.Load(), RecoveredPubs: w.recoveredPubs.Load(),
		Drops: w.drops.Load(), Cuts: w.cuts.Load(), Reconnects: w.reconnects.Load(), Recoveries: w.recoveries.Load(),
		NotRecovered: w.notRecov.Load(), EpochChanges: w.epochChanges.Load(), SlowPauses: w.pauses.Load(), Cut4008: w.cut4008.Load(),
		WhispersSent: w.wSent.Load(), WhispersRecv: w.wRecv.Load(), WhisperDisorder: w.wDisord.Load(), Cycles: w.cycles.Load(),
		Published: map[string]int64{},
	}
	for _, p := range w.pubs {
		s.Published[p.stream] = p.published.Load()
	}
	for _, v := range w.watchers {
		v.mu.Lock()
		s.JoinsSeen += v.joins
		s.LeavesSeen += v.leaves
		s.UnmatchedLeaves += v.unmatched
		s.OpenJoins += int64(len(v.open))
		v.mu.Unlock()
	}
	s.Pending = w.pending()
	return s
}

// pending counts subscribers not connected or paused, and churners inside
// a cycle.
func (w *soakWorker) pending() int64 {
	var n int64
	for _, s := range w.subs {
		if !s.up.Load() || s.paused.Load() {
			n++
		}
	}
	for _, c := range w.churners {
		if c.busy.Load() {
			n++
		}
	}
	return n
}

func (w *soakWorker) progress(ctx context.Context) {
	tk := time.NewTicker(progressEvery)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			w.send(report{Ev: evProgress, Counters: w.counters(), Soak: &SoakCounts{Pending: w.pending()}})
		}
	}
}

// settled answers cmdSoakStop once nothing is pending (or after a minute).
func (w *soakWorker) settled(ctx context.Context) {
	deadline := time.Now().Add(time.Minute)
	for w.pending() > 0 && time.Now().Before(deadline) {
		if sleep(ctx, 50*time.Millisecond) != nil {
			return
		}
	}
	w.send(report{Ev: evSoakSettled, Counters: w.counters(), Soak: &SoakCounts{Pending: w.pending()}})
}

// collect answers cmdCollect. A final one waits (up to 15 s) for every
// subscription to reach its stream's top, then counts what each lost.
func (w *soakWorker) collect(ctx context.Context, c command) {
	r := report{Ev: evStats}
	if c.Final {
		deadline := time.Now().Add(15 * time.Second)
		for !w.caughtUp(c.Tops) && time.Now().Before(deadline) {
			if sleep(ctx, 50*time.Millisecond) != nil {
				return
			}
		}
	}
	s := w.soakCounts()
	var notes []string
	if c.Final {
		for _, sub := range w.subs {
			sub.count(c.Tops, s, &notes)
		}
		s.WhisperLat = w.wlat.Take()
		r.Lat = w.lat.Take()
	}
	r.Counters, r.Soak, r.Samples = w.counters(), s, append(notes, w.samples()...)
	w.send(r)
}

// caughtUp says every subscription has reached its stream's top.
func (w *soakWorker) caughtUp(tops map[string]uint64) bool {
	for _, s := range w.subs {
		if !s.up.Load() || s.paused.Load() {
			return false
		}
		s.mu.Lock()
		for _, st := range s.streams {
			if top, ok := tops[st.name]; ok && (!st.started || st.max < top) {
				s.mu.Unlock()
				return false
			}
		}
		s.mu.Unlock()
	}
	return true
}

// dial connects as user, spreading clients over the source addresses.
func (w *soakWorker) dial(ctx context.Context, idx int, user string, recvBuf int, h Handler) (Conn, error) {
	o := DialOptions{User: user, RecvBuf: recvBuf}
	if n := len(w.t.Locals); n > 0 {
		o.Local = net.ParseIP(w.t.Locals[idx%n])
	}
	return w.ad.Dial(ctx, o, h)
}

// first runs a client's first connect with at most Task.Concurrency of
// them in flight, then calls ready.
func (w *soakWorker) first(ctx context.Context, ready func(), connect func() error) error {
	defer ready()
	select {
	case w.dialSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-w.dialSem }()
	return connect()
}

// firstSubscribed connects client idx of a kind (as user prefix+idx) and
// subscribes it to stream, through first; a failure is counted and noted,
// and ok is false.
func (w *soakWorker) firstSubscribed(ctx context.Context, ready func(), kind string, idx int, prefix, stream string, opts SubOptions, h Handler) (conn Conn, ok bool) {
	err := w.first(ctx, ready, func() error {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := w.dial(dctx, idx, prefix+strconv.Itoa(idx), 0, h)
		if err != nil {
			return err
		}
		if err := c.Subscribe(dctx, stream, opts); err != nil {
			closeConn(c)
			return err
		}
		conn = c
		return nil
	})
	if err != nil {
		w.failed.Add(1)
		w.noteErr(fmt.Errorf("%s %d: %w", kind, idx, err))
		return nil, false
	}
	return conn, true
}

// waitStart waits for cmdSoakStart; false if ctx ended first.
func (w *soakWorker) waitStart(ctx context.Context) bool {
	select {
	case <-w.start:
		return true
	case <-ctx.Done():
		return false
	}
}

// jitter is d scaled by a random factor in [0.5, 1.5).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d)
}

// closeConn closes c and waits until it has ended.
func closeConn(c Conn) {
	c.Close()
	<-c.Done()
}

// soakPub publishes stamped messages on one stream: sequence number k is
// the k-th publication the server accepted, so it belongs at offset k+1.
type soakPub struct {
	w          *soakWorker
	idx, k     int
	stream     string
	rate       float64
	size       int
	published  atomic.Int64
	conn       Conn
	seq        uint64
	buf        []byte
	closedCode atomic.Int32
}

func (p *soakPub) handle(e *Event) {
	switch e.Kind {
	case EventError:
		p.w.pubErrors.Add(1)
		p.w.countCode(e.Code)
	case EventClosed:
		p.closedCode.Store(int32(e.Code))
	}
}

func (p *soakPub) connect(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := p.w.dial(dctx, p.idx, "p"+strconv.Itoa(p.idx), 0, p.handle)
	if err != nil {
		return fmt.Errorf("publisher %s: %w", p.stream, err)
	}
	p.conn = c
	return nil
}

func (p *soakPub) run(ctx context.Context, ready func()) {
	w := p.w
	if err := w.first(ctx, ready, func() error { return p.connect(ctx) }); err != nil {
		w.failed.Add(1)
		w.noteErr(err)
	}
	defer func() {
		if p.conn != nil {
			closeConn(p.conn)
		}
	}()
	if !w.waitStart(ctx) {
		return
	}
	interval := time.Duration(float64(time.Second) / p.rate)
	next := time.Now().Add(rand.N(interval)) // streams out of step
	for {
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			}
		}
		if w.stopped.Load() || ctx.Err() != nil {
			return
		}
		if behind := time.Since(next); behind > time.Second {
			w.unsent.Add(int64(behind / interval))
			next = time.Now()
		}
		if p.conn == nil || isDone(p.conn) {
			if p.conn != nil {
				w.noteErr(fmt.Errorf("publisher %s: connection ended (code %d); connecting again", p.stream, p.closedCode.Load()))
				closeConn(p.conn)
				p.conn = nil
			}
			if err := p.connect(ctx); err != nil {
				w.noteErr(err)
				if sleep(ctx, time.Second) != nil {
					return
				}
				continue
			}
		}
		p.buf = AppendStamp(p.buf[:0], p.seq, next.UnixNano(), int64(p.k), p.size)
		if err := p.conn.Publish(p.stream, p.buf); err != nil {
			if w.sendErrs.Add(1) <= 3 {
				w.noteErr(fmt.Errorf("publish %s: %w", p.stream, err))
			}
		} else {
			p.seq++
			p.published.Add(1)
			w.sent.Add(1)
		}
		next = next.Add(interval)
	}
}

func isDone(c Conn) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

// soakSub is a subscriber of several publication streams that checks
// every delivery: each offset once, in order, with the payload published
// there. Dropping subscribers and slow readers come back with recovery.
type soakSub struct {
	w       *soakWorker
	idx     int
	slow    bool
	dropper bool
	byIdx   []*subStream // by publication stream index; nil: not subscribed
	streams []*subStream
	up      atomic.Bool
	paused  atomic.Bool
	code    atomic.Int32 // close code of the connection that ended last
	mu      sync.Mutex   // guards every subStream (the reactor writes, others read)
}

// subStream is one subscription's record of a stream.
type subStream struct {
	name     string
	started  bool   // the first subscribe was confirmed
	asked    bool   // the current subscribe asked to recover
	epoch    string // of the first subscribe
	start    uint64 // the stream's top at the first subscribe
	max      uint64 // highest offset delivered
	top      uint64 // the stream's top at the last subscribe: offsets up to it are catch-up, not live
	seen     []uint64
	distinct int64
	dup, ooo int64
}

func (w *soakWorker) newSub(idx, k int, slow bool) *soakSub {
	s := &soakSub{w: w, idx: idx, slow: slow, byIdx: make([]*subStream, w.sh.pubStreams())}
	s.dropper = !slow && w.sh.DropEvery > 0 && k%w.sh.DropEvery == 0
	for j := 0; j < w.sh.Streams; j++ {
		s.byIdx[j] = &subStream{name: w.sh.pubStream(j)}
	}
	if w.sh.BulkRate > 0 && (slow || k < w.sh.BulkSubs) {
		s.byIdx[w.sh.Streams] = &subStream{name: w.sh.pubStream(w.sh.Streams)}
	}
	for _, st := range s.byIdx {
		if st != nil {
			s.streams = append(s.streams, st)
		}
	}
	return s
}

func (s *soakSub) stream(name []byte) *subStream {
	k, ok := s.w.streamIdx[string(name)]
	if !ok {
		return nil
	}
	return s.byIdx[k]
}

// handle runs on the reactor goroutine.
func (s *soakSub) handle(e *Event) {
	w := s.w
	switch e.Kind {
	case EventSubscribed:
		st := s.stream(e.Stream)
		if st == nil {
			return
		}
		s.mu.Lock()
		st.top = e.Offset
		switch {
		case !st.started:
			st.started, st.epoch, st.start, st.max = true, string(e.Epoch), e.Offset, e.Offset
		case string(e.Epoch) != st.epoch:
			// History was lost: what this subscription missed cannot come
			// back. Count it and check on from the new epoch.
			w.epochChanges.Add(1)
			w.noteErr(fmt.Errorf("subscriber %d %s: epoch %s -> %s at offset %d", s.idx, st.name, st.epoch, e.Epoch, st.max))
			*st = subStream{name: st.name, started: true, epoch: string(e.Epoch), start: e.Offset, max: e.Offset, top: e.Offset}
		case st.asked && !e.Recovered:
			w.notRecov.Add(1)
			w.noteErr(fmt.Errorf("subscriber %d %s: recovery from offset %d refused (top %d)", s.idx, st.name, st.max, e.Offset))
		case st.asked:
			w.recoveries.Add(1)
		}
		s.mu.Unlock()
	case EventPub:
		w.recv.Add(1)
		st := s.stream(e.Stream)
		if st == nil {
			w.mismatched.Add(1)
			return
		}
		seq, sent, _, ok := ParseStamp(e.Data)
		s.mu.Lock()
		epochOK := string(e.Epoch) == st.epoch
		if epochOK {
			st.record(e.Offset)
		}
		catchUp := e.Recovered || e.Offset <= st.top
		s.mu.Unlock()
		if !epochOK || !ok || seq+1 != e.Offset {
			if w.mismatched.Add(1) <= 3 {
				w.noteErr(fmt.Errorf("subscriber %d %s: offset %d epoch %s carries sequence %d (ok %v)", s.idx, st.name, e.Offset, e.Epoch, seq, ok))
			}
		}
		if catchUp {
			w.recoveredPubs.Add(1)
		} else if ok && !s.slow {
			w.lat.Record(e.At - sent)
		}
	case EventError:
		w.countCode(e.Code)
	case EventClosed:
		s.code.Store(int32(e.Code))
	}
}

// record notes offset o. Lock s.mu must be held.
func (st *subStream) record(o uint64) {
	if !st.started || o <= st.start {
		st.ooo++
		return
	}
	i := o - st.start - 1
	word, bit := i/64, i%64
	for uint64(len(st.seen)) <= word {
		st.seen = append(st.seen, 0)
	}
	if st.seen[word]&(1<<bit) != 0 {
		st.dup++
		return
	}
	st.seen[word] |= 1 << bit
	st.distinct++
	if o < st.max {
		st.ooo++
	} else {
		st.max = o
	}
}

// missing lists the offsets in (start, top] not delivered, as ranges, and
// counts them.
func (st *subStream) missing(top uint64) (n int64, ranges [][2]uint64) {
	for o := st.start + 1; o <= top; o++ {
		i := o - st.start - 1
		if word := i / 64; word < uint64(len(st.seen)) && st.seen[word]&(1<<(i%64)) != 0 {
			continue
		}
		n++
		if k := len(ranges); k > 0 && ranges[k-1][1] == o-1 {
			ranges[k-1][1] = o
		} else if k < 4 {
			ranges = append(ranges, [2]uint64{o, o})
		}
	}
	return n, ranges
}

// count adds this subscriber's final figures to c, and to notes (up to 8)
// what it lost.
func (s *soakSub) count(tops map[string]uint64, c *SoakCounts, notes *[]string) {
	note := func(format string, args ...any) {
		if len(*notes) < 8 {
			*notes = append(*notes, fmt.Sprintf(format, args...))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		top, ok := tops[st.name]
		if !ok {
			top = st.max
		}
		c.Duplicated += st.dup
		c.OutOfOrder += st.ooo
		if !st.started {
			c.Expected += int64(top)
			c.Lost += int64(top)
			c.Behind++
			note("subscriber %d %s: never subscribed", s.idx, st.name)
			continue
		}
		if top < st.start {
			continue
		}
		c.Expected += int64(top - st.start)
		n, ranges := st.missing(top)
		c.Lost += n
		c.Delivered += int64(top-st.start) - n
		if st.max < top {
			c.Behind++
		}
		if n > 0 {
			note("subscriber %d (slow %v, dropping %v) %s: %d lost, offsets %v (subscribed at %d, top %d)",
				s.idx, s.slow, s.dropper, st.name, n, ranges, st.start, top)
		}
	}
}

func (s *soakSub) connect(ctx context.Context) (Conn, error) {
	w := s.w
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	recvBuf := 0
	if s.slow {
		recvBuf = w.sh.RecvBuf
	}
	s.code.Store(0)
	conn, err := w.dial(dctx, s.idx, "s"+strconv.Itoa(s.idx), recvBuf, s.handle)
	if err != nil {
		return nil, err
	}
	for _, st := range s.streams {
		var o SubOptions
		s.mu.Lock()
		st.asked = st.started
		if st.started {
			o.Recover = &Position{Epoch: st.epoch, Offset: st.max}
		}
		s.mu.Unlock()
		if err := conn.Subscribe(dctx, st.name, o); err != nil {
			closeConn(conn)
			return nil, fmt.Errorf("subscribe %s: %w", st.name, err)
		}
	}
	return conn, nil
}

func (s *soakSub) run(ctx context.Context, ready func()) {
	w := s.w
	var conn Conn
	err := w.first(ctx, ready, func() (err error) {
		conn, err = s.connect(ctx)
		return err
	})
	for ctx.Err() == nil {
		if err != nil {
			w.failed.Add(1)
			w.noteErr(fmt.Errorf("subscriber %d: %w", s.idx, err))
			if sleep(ctx, time.Second) != nil {
				return
			}
			conn, err = s.connect(ctx)
			continue
		}
		s.up.Store(true)
		w.up.Add(1)
		planned := s.hold(ctx, conn)
		s.up.Store(false)
		w.up.Add(-1)
		if ctx.Err() != nil {
			return
		}
		if !planned {
			code := int(s.code.Load())
			w.cuts.Add(1)
			w.countClose(code)
			if code == 4008 {
				w.cut4008.Add(1)
			}
		} else if d := rand.N(max(w.sh.Offline, time.Millisecond)); !w.stopped.Load() {
			if sleep(ctx, d) != nil {
				return
			}
		}
		w.reconnects.Add(1)
		conn, err = s.connect(ctx)
	}
}

// hold keeps conn until it ends (false) or the subscriber drops it on
// purpose (true); slow readers pause in between.
func (s *soakSub) hold(ctx context.Context, conn Conn) (planned bool) {
	w := s.w
	var drop, pause <-chan time.Time
	stop := w.stop
	if w.stopped.Load() {
		stop = nil
	} else {
		if s.dropper {
			drop = time.After(jitter(w.sh.ReconnectEvery))
		}
		if s.slow {
			pause = time.After(jitter(w.sh.SlowEvery))
		}
	}
	for {
		select {
		case <-ctx.Done():
			closeConn(conn)
			return true
		case <-conn.Done():
			return false
		case <-stop:
			stop, drop, pause = nil, nil, nil
		case <-drop:
			closeConn(conn)
			w.drops.Add(1)
			return true
		case <-pause:
			conn.Pause(true)
			s.paused.Store(true)
			w.pauses.Add(1)
			select {
			case <-time.After(w.sh.SlowPause):
			case <-stop:
				stop, drop = nil, nil
			case <-ctx.Done():
			}
			conn.Pause(false)
			s.paused.Store(false)
			pause = nil
			if stop != nil {
				pause = time.After(jitter(w.sh.SlowEvery))
			}
		}
	}
}

// soakWhisperer whispers to its group at WhisperHz and checks that each
// sender's whispers reach it in order, once.
type soakWhisperer struct {
	w      *soakWorker
	idx    int
	stream string
	last   map[int64]uint64 // by sender: its last sequence number + 1 (reactor goroutine only)
}

func (h *soakWhisperer) handle(e *Event) {
	w := h.w
	switch e.Kind {
	case EventWhisper:
		seq, sent, from, ok := ParseStamp(e.Data)
		if !ok {
			return
		}
		w.wRecv.Add(1)
		w.wlat.Record(e.At - sent)
		if seq+1 <= h.last[from] {
			w.wDisord.Add(1)
		} else {
			h.last[from] = seq + 1
		}
	case EventError:
		w.countCode(e.Code)
	case EventClosed:
		if !w.stopped.Load() || e.Code != 0 {
			w.countClose(e.Code)
		}
	}
}

func (h *soakWhisperer) run(ctx context.Context, ready func()) {
	w := h.w
	conn, ok := w.firstSubscribed(ctx, ready, "whisperer", h.idx, "w", h.stream, SubOptions{}, h.handle)
	if !ok {
		return
	}
	w.up.Add(1)
	defer w.up.Add(-1)
	defer closeConn(conn)
	if w.sh.WhisperHz <= 0 || !w.waitStart(ctx) {
		<-ctx.Done()
		return
	}
	interval := time.Duration(float64(time.Second) / w.sh.WhisperHz)
	tk := time.NewTicker(interval)
	defer tk.Stop()
	var seq uint64
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.stop:
			<-ctx.Done()
			return
		case <-conn.Done():
			w.noteErr(fmt.Errorf("whisperer %d: connection ended", h.idx))
			<-ctx.Done()
			return
		case <-tk.C:
		}
		buf = AppendStamp(buf[:0], seq, time.Now().UnixNano(), int64(h.idx), StampSize)
		if err := conn.Whisper(h.stream, "soak", buf); err != nil {
			w.sendErrs.Add(1)
			continue
		}
		seq++
		w.wSent.Add(1)
	}
}

// soakWatcher watches a presence stream and pairs each churner's join with
// its leave.
type soakWatcher struct {
	w      *soakWorker
	idx    int
	stream string

	mu                       sync.Mutex
	open                     map[string]bool // users joined and not left
	joins, leaves, unmatched int64
}

func (v *soakWatcher) handle(e *Event) {
	switch e.Kind {
	case EventJoin:
		v.mu.Lock()
		v.joins++
		v.open[string(e.User)] = true
		v.mu.Unlock()
	case EventLeave:
		v.mu.Lock()
		if v.open[string(e.User)] {
			delete(v.open, string(e.User))
			v.leaves++
		} else {
			v.unmatched++
		}
		v.mu.Unlock()
	case EventError:
		v.w.countCode(e.Code)
	case EventClosed:
		if e.Code != 0 {
			v.w.countClose(e.Code)
		}
	}
}

func (v *soakWatcher) run(ctx context.Context, ready func()) {
	w := v.w
	conn, ok := w.firstSubscribed(ctx, ready, "watcher", v.idx, "v", v.stream, SubOptions{Presence: true}, v.handle)
	if !ok {
		return
	}
	w.up.Add(1)
	defer w.up.Add(-1)
	select {
	case <-ctx.Done():
	case <-conn.Done():
		w.noteErr(fmt.Errorf("watcher %d: connection ended", v.idx))
	}
	closeConn(conn)
}

// soakChurner opens a connection per cycle under a new user name (so the
// server's reconnect grace never merges two cycles), joins presence with
// the subscribe, and leaves: with a leave message on even cycles, by
// dropping the connection on odd ones (the leave then comes after the
// server's presence grace).
type soakChurner struct {
	w      *soakWorker
	idx    int
	stream string
	busy   atomic.Bool
}

func (c *soakChurner) run(ctx context.Context) {
	w := c.w
	if !w.waitStart(ctx) {
		return
	}
	if sleep(ctx, rand.N(w.sh.Hold+w.sh.Rest+time.Millisecond)) != nil { // out of step
		return
	}
	var buf []byte
	for cycle := 0; ctx.Err() == nil && !w.stopped.Load(); cycle++ {
		c.busy.Store(true)
		c.cycle(ctx, cycle, &buf)
		c.busy.Store(false)
		select {
		case <-time.After(jitter(w.sh.Rest)):
		case <-w.stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (c *soakChurner) cycle(ctx context.Context, cycle int, buf *[]byte) {
	w := c.w
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	user := "c" + strconv.Itoa(c.idx) + "." + strconv.Itoa(cycle)
	conn, err := w.dial(dctx, c.idx, user, 0, func(e *Event) {
		if e.Kind == EventError {
			w.countCode(e.Code)
		}
	})
	if err != nil {
		w.failed.Add(1)
		w.noteErr(fmt.Errorf("churner %d: %w", c.idx, err))
		return
	}
	*buf = AppendStamp((*buf)[:0], uint64(cycle), time.Now().UnixNano(), int64(c.idx), StampSize)
	if err := conn.Subscribe(dctx, c.stream, SubOptions{Join: *buf}); err != nil {
		w.failed.Add(1)
		w.noteErr(fmt.Errorf("churner %d: subscribe: %w", c.idx, err))
		closeConn(conn)
		return
	}
	w.cycles.Add(1)
	select {
	case <-time.After(jitter(w.sh.Hold)):
	case <-w.stop:
	case <-ctx.Done():
	case <-conn.Done():
	}
	if cycle%2 == 0 || w.stopped.Load() {
		_ = conn.Leave(c.stream)
	}
	closeConn(conn)
}
