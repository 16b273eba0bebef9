package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxIdleStreams is the number of streams beyond which the sweep forgets
// the streams that hold no publication (see sweep). A variable for tests.
var maxIdleStreams = 100_000

// DefaultMetaTTL is how long an idle stream's epoch and offset are
// remembered when Options.MetaTTL is 0.
const DefaultMetaTTL = 24 * time.Hour

const (
	// shardCount is a power of two so a hash picks a shard with a mask.
	shardCount = 64
	// sweepInterval is how often the background sweep frees the memory of
	// idle streams. Reads and appends evict lazily, so the sweep only
	// matters for streams nobody touches any more.
	sweepInterval = 10 * time.Second
	// minRingCap is the first allocation for a stream's window; the window
	// then doubles up to Options.Size, so a stream with few publications
	// does not pay for a full window.
	minRingCap = 8
	// minQueueCompact is the least length at which the eviction queue is
	// compacted, so a small queue is not scanned over and over.
	minQueueCompact = 4096
)

// Default byte budgets of NewMemoryLog.
const (
	// DefaultMaxBytes is the budget of all streams together: 256 MiB.
	DefaultMaxBytes = 256 << 20
	// DefaultMaxStreamBytes is the cap of one stream: 16 MiB.
	DefaultMaxStreamBytes = 16 << 20
	// DefaultMaxDocumentBytes is the cap of one document stream, its
	// snapshot and the publications after it: 64 MiB.
	DefaultMaxDocumentBytes = 64 << 20
	// DefaultDocumentBudget is what all document streams together may
	// hold: 1 GiB.
	DefaultDocumentBudget = 1 << 30
)

// documentLife stands for "as long as the node lives": a document's epoch
// does not expire.
const documentLife = 100 * 365 * 24 * time.Hour

// MemoryConfig bounds what a MemoryLog holds in bytes, on top of the count
// and age bounds each stream's Options set. Sizes are in
// Publication.StoredBytes. The zero value sets no byte bound.
type MemoryConfig struct {
	// MaxBytes is the budget of the whole log, all streams together; 0
	// means none. Over it, the oldest publications across all streams are
	// evicted, whichever streams they belong to. A publication larger than
	// the whole budget is numbered but not kept, and neither are the
	// earlier ones of its stream, as a window is a contiguous run of
	// offsets; other streams keep theirs.
	MaxBytes int
	// MaxStreamBytes caps each stream; 0 means no cap. Over it, the
	// stream's oldest publications are evicted, but never its newest: a
	// publication larger than the cap is kept alone.
	MaxStreamBytes int
	// MaxDocumentBytes caps each document stream (Options.Document): its
	// snapshot and the publications after it. 0 means no cap. Over it an
	// Append fails with ErrDocumentFull; nothing is evicted.
	MaxDocumentBytes int
	// DocumentBudget is what all document streams together may hold; 0
	// means no bound. Over it, Appends to documents fail with
	// ErrDocumentFull. Documents do not count against MaxBytes and the
	// budget eviction never touches them.
	DocumentBudget int
}

var (
	_ Log       = (*MemoryLog)(nil)
	_ Compactor = (*MemoryLog)(nil)
)

// MemoryLog is a Log held in process memory: the single-node default.
//
// Streams are spread over 64 shards, each guarded by one mutex, so appends
// to different streams rarely contend. Offsets are assigned under the
// shard's lock, atomically with storing the publication. Publication data is
// not copied: callers must not modify Data after Append, and must not modify
// the Data of publications returned by Read.
//
// Besides each stream's count and age bounds, a MemoryConfig may bound the
// bytes held per stream and by the whole log. The per-stream cap is kept
// exactly, under the stream's shard lock. The log's budget is kept
// approximately: every Append records its publication in a node-wide
// eviction queue, in append order, and an Append that leaves the log over
// budget evicts from the queue's head, the oldest publications of any
// stream. Concurrent Appends may overshoot the budget by the publications
// in flight, or evict a few more than needed.
//
// Lock order: a shard's mu is never held while taking another shard's mu or
// the queue's mu, and the queue's mu is never held while taking a shard's.
// The budget eviction runs after Append released its shard: it takes an
// entry from the queue under the queue's mu, releases it, and only then
// locks the entry's shard, one shard at a time.
type MemoryLog struct {
	now    func() time.Time // injectable for tests
	shards [shardCount]memoryShard

	maxBytes       int // the log's budget; 0: none, and no queue is kept
	maxStreamBytes int // each stream's cap; 0: none
	maxDocBytes    int // each document's cap; 0: none
	docBudget      int // all documents' budget; 0: none
	docUsed        atomic.Int64
	// used is the StoredBytes of every held publication, kept only when
	// maxBytes > 0. It changes under the shard lock of the stream whose
	// publications come or go, so it equals the sum of the streams' bytes
	// whenever no Append, Read or sweep is running.
	used  atomic.Int64
	queue evictQueue

	closeOnce sync.Once
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the sweep goroutine exits; nil if none
}

type memoryShard struct {
	mu      sync.Mutex // guards the following
	streams map[string]*memoryStream

	// Padding keeps neighbouring shards' locks on separate cache lines.
	_ [48]byte
}

// memoryStream is one stream's meta and window. Its shard's mu guards it.
type memoryStream struct {
	epoch       string
	offset      uint64    // last assigned offset; 0 before the first Append
	metaExpires time.Time // when epoch and offset are forgotten
	opts        Options   // normalized bounds from the latest Append
	ring        pubRing   // the retained window, oldest first, contiguous offsets
	bytes       int       // StoredBytes of the publications in ring
	// ref names this epoch of the stream in the eviction queue; nil when
	// the log has no budget, and for documents.
	ref *streamRef
	// snap is a document's snapshot, nil until the first Compact. Its
	// StoredBytes count in bytes; the ring holds what came after it.
	snap *Publication
}

// NewMemoryLog returns an empty MemoryLog with the default byte budgets
// (DefaultMaxBytes, DefaultMaxStreamBytes) and a background sweep that
// frees idle streams. Call Close to stop the sweep.
func NewMemoryLog() *MemoryLog {
	return NewMemoryLogWith(MemoryConfig{
		MaxBytes: DefaultMaxBytes, MaxStreamBytes: DefaultMaxStreamBytes,
		MaxDocumentBytes: DefaultMaxDocumentBytes, DocumentBudget: DefaultDocumentBudget,
	})
}

// NewMemoryLogWith is NewMemoryLog with the byte bounds of cfg; negative
// sizes count as 0, no bound.
func NewMemoryLogWith(cfg MemoryConfig) *MemoryLog {
	return newMemoryLog(cfg, time.Now, sweepInterval)
}

// newMemoryLog returns a MemoryLog reading time from now. A sweep interval
// of 0 starts no background goroutine.
func newMemoryLog(cfg MemoryConfig, now func() time.Time, sweep time.Duration) *MemoryLog {
	m := &MemoryLog{
		now:            now,
		maxBytes:       max(cfg.MaxBytes, 0),
		maxStreamBytes: max(cfg.MaxStreamBytes, 0),
		maxDocBytes:    max(cfg.MaxDocumentBytes, 0),
		docBudget:      max(cfg.DocumentBudget, 0),
		stop:           make(chan struct{}),
	}
	m.queue.compactAt = minQueueCompact
	for i := range m.shards {
		m.shards[i].streams = make(map[string]*memoryStream)
	}
	if sweep > 0 {
		m.done = make(chan struct{})
		go m.sweepLoop(sweep)
	}
	return m
}

// Close stops the background sweep and waits for it to exit. The log stays
// usable afterwards; expired streams are then only reset when touched.
// Close always returns nil; it satisfies io.Closer.
func (m *MemoryLog) Close() error {
	m.closeOnce.Do(func() {
		close(m.stop)
		if m.done != nil {
			<-m.done
		}
	})
	return nil
}

// Append stores pub under the next offset of stream. It stamps pub.Time
// with the current time and applies opts as the stream's bounds from now on.
func (m *MemoryLog) Append(ctx context.Context, stream string, pub Publication, opts Options) (Publication, Position, error) {
	if err := ctx.Err(); err != nil {
		return Publication{}, Position{}, err
	}
	now := m.now()
	opts = normalize(opts)
	sh := m.shard(stream)

	sh.mu.Lock()
	s := m.streamLocked(sh, stream, now)
	if opts.Document || s.opts.Document {
		defer sh.mu.Unlock()
		return m.appendDocLocked(s, pub, now)
	}
	s.opts = opts
	s.offset++
	s.metaExpires = now.Add(opts.MetaTTL)
	pub.Offset = s.offset
	pub.Time = now.UnixMilli()
	freed := s.evictLocked(pub.Time)
	// A publication over the whole budget would only push every other
	// stream's history out before going itself.
	stored := opts.Size > 0 && (m.maxBytes == 0 || pub.StoredBytes() <= m.maxBytes)
	if stored {
		for s.ring.n >= opts.Size {
			freed += s.popOldestLocked()
		}
		s.ring.push(pub, opts.Size)
		s.bytes += pub.StoredBytes()
		// The newest stays even when it alone is over the cap, so the
		// stream's latest publication can always be recovered.
		for m.maxStreamBytes > 0 && s.bytes > m.maxStreamBytes && s.ring.n > 1 {
			freed += s.popOldestLocked()
		}
	} else {
		// The bound may have dropped to 0 since the last Append, or pub is
		// not kept: either way the window, a contiguous run ending at the
		// top, cannot hold anything older.
		freed += s.clearLocked()
	}
	ref := s.ref
	if ref != nil {
		s.syncLowLocked()
		added := 0
		if stored {
			added = pub.StoredBytes()
		}
		m.used.Add(int64(added - freed))
	}
	pos := Position{Epoch: s.epoch, Offset: s.offset}
	sh.mu.Unlock()

	if ref != nil && stored {
		m.queue.push(evictEntry{ref: ref, offset: pub.Offset})
		if m.used.Load() > int64(m.maxBytes) {
			m.evictOverBudget()
		}
	}
	return pub, pos, nil
}

// appendDocLocked is Append to a document stream: nothing is evicted, and
// a publication over a byte bound is refused. Its shard's mu must be held.
func (m *MemoryLog) appendDocLocked(s *memoryStream, pub Publication, now time.Time) (Publication, Position, error) {
	m.makeDocLocked(s, now)
	cost := pub.StoredBytes()
	if m.maxDocBytes > 0 && s.bytes+cost > m.maxDocBytes ||
		m.docBudget > 0 && m.docUsed.Load()+int64(cost) > int64(m.docBudget) {
		return Publication{}, Position{}, ErrDocumentFull
	}
	s.offset++
	pub.Offset = s.offset
	pub.Time = now.UnixMilli()
	s.ring.push(pub, math.MaxInt)
	s.bytes += cost
	m.docUsed.Add(int64(cost))
	return pub, Position{Epoch: s.epoch, Offset: s.offset}, nil
}

// makeDocLocked turns s into a document for as long as the log lives: its
// epoch no longer expires, its bounds are gone, and its bytes move from
// the log's budget to the documents'. The shard's mu must be held.
func (m *MemoryLog) makeDocLocked(s *memoryStream, now time.Time) {
	if s.opts.Document {
		return
	}
	s.opts = Options{Document: true, MetaTTL: documentLife}
	s.metaExpires = now.Add(documentLife)
	if s.ref != nil {
		s.ref.kill() // the budget eviction must never reach a document
		s.ref = nil
		m.used.Add(-int64(s.bytes))
	}
	m.docUsed.Add(int64(s.bytes))
}

// Compact stores data as the snapshot of the document stream through
// at.Offset and drops the publications it covers; see Compactor.
func (m *MemoryLog) Compact(ctx context.Context, stream string, at Position, data []byte, opts Options) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := m.now()
	sh := m.shard(stream)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := m.streamLocked(sh, stream, now)
	switch {
	case at.Epoch != s.epoch:
		return false, ErrEpochMismatch
	case at.Offset > s.offset:
		return false, ErrSnapshotAhead
	case at.Offset == 0 || s.snap != nil && s.snap.Offset >= at.Offset:
		return false, nil
	}
	m.makeDocLocked(s, now)
	freed := 0
	for s.ring.n > 0 && s.ring.at(0).Offset <= at.Offset {
		freed += s.popOldestLocked()
	}
	if s.snap != nil {
		c := s.snap.StoredBytes()
		s.bytes -= c
		freed += c
	}
	s.snap = &Publication{Offset: at.Offset, Data: data, Time: now.UnixMilli()}
	added := s.snap.StoredBytes()
	s.bytes += added
	m.docUsed.Add(int64(added - freed))
	return true, nil
}

// DocumentBytes returns what all document streams hold together, in
// Publication.StoredBytes.
func (m *MemoryLog) DocumentBytes() int64 { return m.docUsed.Load() }

// evictOverBudget evicts the publications at the head of the eviction
// queue until the log is within its budget. It must be called with no
// lock of the log held: it takes the queue's lock and the shards' locks
// one after the other, never together.
func (m *MemoryLog) evictOverBudget() {
	for m.used.Load() > int64(m.maxBytes) {
		e, ok := m.queue.pop()
		if !ok {
			// Only publications whose entries are not pushed yet remain;
			// their Appends evict them if still over.
			return
		}
		sh := m.shard(e.ref.name)
		sh.mu.Lock()
		// The entry is live only for the epoch it was pushed in: after a
		// restart, or once the sweep forgot the stream, its offset names
		// another publication or none.
		if s := sh.streams[e.ref.name]; s != nil && s.ref == e.ref {
			freed := 0
			// Everything up to e.offset goes, not just e.offset: entries of
			// one stream may be queued slightly out of order by concurrent
			// Appends, and the window must stay a contiguous run.
			for s.ring.n > 0 && s.ring.at(0).Offset <= e.offset {
				freed += s.popOldestLocked()
			}
			if s.ring.n == 0 {
				// A stream the budget emptied gives its window back now,
				// not at the next sweep: a flood over many streams would
				// otherwise hold a window per stream meanwhile.
				s.ring.buf, s.ring.head = nil, 0
			}
			s.syncLowLocked()
			m.used.Add(-int64(freed))
		}
		sh.mu.Unlock()
	}
}

// Read returns the publications of stream selected by q. Reading a stream
// never published to creates its meta, like Top, so that the epoch the
// caller sees is the one later Appends use.
func (m *MemoryLog) Read(ctx context.Context, stream string, q Query) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	now := m.now()
	sh := m.shard(stream)

	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := m.streamLocked(sh, stream, now)
	res := Result{Top: Position{Epoch: s.epoch, Offset: s.offset}}
	if q.After.Epoch != "" && q.After.Epoch != s.epoch {
		return res, ErrEpochMismatch
	}
	after := q.After.Offset
	if s.snap != nil && after < s.snap.Offset && !q.Reverse {
		// A document read from before its snapshot starts with it: the
		// publications it replaced are gone.
		res.Pubs = append(res.Pubs, *s.snap)
		res.Snapshot = true
		after = s.snap.Offset
		if q.Limit > 0 {
			if q.Limit == 1 {
				res.More = after < s.offset
				res.Complete = true
				return res, nil
			}
			q.Limit--
		}
		if q.MaxBytes > 0 {
			// The snapshot was the one that always goes; what follows
			// must fit what is left.
			q.MaxBytes = max(q.MaxBytes-len(s.snap.Data), 0)
			if q.MaxBytes == 0 {
				res.More = after < s.offset
				res.Complete = true
				return res, nil
			}
		}
	}
	if after >= s.offset {
		// Nothing after the caller's position, so nothing can be missing.
		res.Complete = true
		return res, nil
	}
	if freed := s.evictLocked(now.UnixMilli()); s.ref != nil {
		s.syncLowLocked()
		m.used.Add(-int64(freed))
	}
	n := s.ring.n
	if n == 0 {
		return res, nil
	}
	// Whatever bound evicted them (count, age, bytes), publications are
	// only ever dropped from the front of the window, so the window holds
	// all of (after, top] exactly when it starts at or before after+1.
	oldest := s.ring.at(0).Offset
	res.Complete = oldest <= after+1
	first := 0 // index of the first publication with offset > after
	if after >= oldest {
		first = int(after - oldest + 1)
	}
	index := func(i int) int { return first + i }
	if q.Reverse {
		index = func(i int) int { return n - 1 - i }
	}
	count := n - first
	if q.Limit > 0 && count > q.Limit {
		count = q.Limit
		res.More = true
	}
	if q.MaxBytes > 0 {
		sum := 0
		for i := range count {
			sum += len(s.ring.at(index(i)).Data)
			if sum > q.MaxBytes && (i > 0 || res.Snapshot) {
				count = i
				res.More = true
				break
			}
		}
	}
	k := len(res.Pubs) // 1 after a snapshot
	pubs := make([]Publication, k+count)
	copy(pubs, res.Pubs)
	for i := range count {
		pubs[k+i] = *s.ring.at(index(i))
	}
	res.Pubs = pubs
	return res, nil
}

// Top returns the current position of stream, creating its meta with a
// fresh epoch and offset 0 if the stream is unknown.
func (m *MemoryLog) Top(ctx context.Context, stream string) (Position, error) {
	if err := ctx.Err(); err != nil {
		return Position{}, err
	}
	now := m.now()
	sh := m.shard(stream)

	sh.mu.Lock()
	s := m.streamLocked(sh, stream, now)
	pos := Position{Epoch: s.epoch, Offset: s.offset}
	sh.mu.Unlock()
	return pos, nil
}

// shard returns the shard holding stream, chosen by 32-bit FNV-1a. The hash
// is inlined because hash/fnv would need the name as a []byte.
func (m *MemoryLog) shard(stream string) *memoryShard {
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(stream); i++ {
		h ^= uint32(stream[i])
		h *= prime32
	}
	return &m.shards[h&(shardCount-1)]
}

// streamLocked returns the named stream of sh, creating it if unknown and
// restarting it with a new epoch if its meta has expired. sh.mu must be
// held.
func (m *MemoryLog) streamLocked(sh *memoryShard, name string, now time.Time) *memoryStream {
	s, ok := sh.streams[name]
	if !ok {
		s = &memoryStream{
			epoch:       newEpoch(""),
			metaExpires: now.Add(DefaultMetaTTL),
			opts:        Options{MetaTTL: DefaultMetaTTL},
		}
		// Clone so the map never pins a caller's larger buffer the name
		// might have been sliced from.
		name = strings.Clone(name)
		sh.streams[name] = s
		if m.maxBytes > 0 {
			s.ref = newStreamRef(name)
		}
		return s
	}
	if !now.Before(s.metaExpires) {
		// Restart from offset 0 with a new epoch, and drop the old window:
		// keeping it would hand old publications out under new offsets.
		s.epoch = newEpoch(s.epoch)
		s.offset = 0
		s.metaExpires = now.Add(s.opts.MetaTTL)
		freed := s.clearLocked()
		if s.ref != nil {
			// The old epoch's queue entries must not evict the new epoch's
			// publications, which reuse their offsets.
			s.ref.kill()
			s.ref = newStreamRef(s.ref.name)
			m.used.Add(-int64(freed))
		}
	}
	return s
}

// evictLocked drops publications older than the stream's TTL at nowMilli
// and returns the StoredBytes it freed. The shard's mu must be held.
func (s *memoryStream) evictLocked(nowMilli int64) (freed int) {
	if s.opts.TTL <= 0 {
		return 0
	}
	cutoff := nowMilli - s.opts.TTL.Milliseconds()
	for s.ring.n > 0 && s.ring.at(0).Time <= cutoff {
		freed += s.popOldestLocked()
	}
	return freed
}

// popOldestLocked drops the oldest publication of the window, which must
// not be empty, and returns its StoredBytes. The shard's mu must be held.
func (s *memoryStream) popOldestLocked() int {
	c := s.ring.at(0).StoredBytes()
	s.ring.popFront()
	s.bytes -= c
	return c
}

// clearLocked drops the whole window and returns the StoredBytes it held.
// The shard's mu must be held.
func (s *memoryStream) clearLocked() int {
	freed := s.bytes
	s.ring.clear()
	s.bytes = 0
	return freed
}

// syncLowLocked tells the eviction queue which of the stream's entries are
// stale: those below the oldest held offset, or all so far when the window
// is empty. The shard's mu must be held and s.ref must not be nil.
func (s *memoryStream) syncLowLocked() {
	low := s.offset + 1
	if s.ring.n > 0 {
		low = s.ring.at(0).Offset
	}
	s.ref.low.Store(low)
}

// sweepLoop runs sweep every interval until Close.
func (m *MemoryLog) sweepLoop(interval time.Duration) {
	defer close(m.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.sweep()
		}
	}
}

// sweep forgets streams whose meta expired, evicts publications past their
// TTL, and releases the windows of streams left empty.
func (m *MemoryLog) sweep() {
	// Past maxIdleStreams streams in all, streams that hold no publication
	// are forgotten at once rather than after their meta TTL: publishing to
	// ever new stream names must not grow memory without a bound. Such a
	// stream restarts with a new epoch on its next publication, as after
	// the TTL; a client that recovers then hears recovered: false.
	total := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		total += len(sh.streams)
		sh.mu.Unlock()
	}
	crowded := total > maxIdleStreams
	for i := range m.shards {
		sh := &m.shards[i]
		now := m.now()
		nowMilli := now.UnixMilli()
		freed := 0
		sh.mu.Lock()
		for name, s := range sh.streams {
			if !now.Before(s.metaExpires) || crowded && s.ring.n == 0 && s.snap == nil {
				freed += s.clearLocked()
				if s.ref != nil {
					s.ref.kill()
				}
				delete(sh.streams, name)
				continue
			}
			freed += s.evictLocked(nowMilli)
			if s.ref != nil {
				s.syncLowLocked()
			}
			if s.ring.n == 0 {
				s.ring.buf = nil
				s.ring.head = 0
			}
		}
		if m.maxBytes > 0 {
			m.used.Add(-int64(freed))
		}
		sh.mu.Unlock()
	}
}

// normalize replaces unset or negative bounds with their meaning.
func normalize(o Options) Options {
	if o.Size < 0 {
		o.Size = 0
	}
	if o.TTL < 0 {
		o.TTL = 0
	}
	if o.MetaTTL <= 0 {
		o.MetaTTL = DefaultMetaTTL
	}
	return o
}

// newEpoch returns 8 random bytes in hex, different from prev.
func newEpoch(prev string) string {
	var b [8]byte
	for {
		rand.Read(b[:]) // never fails since Go 1.24
		if e := hex.EncodeToString(b[:]); e != prev {
			return e
		}
	}
}

// pubRing is a ring buffer of publications, oldest first. It grows by
// doubling up to the stream's size bound, so small streams stay small.
type pubRing struct {
	buf  []Publication
	head int // index of the oldest publication in buf
	n    int // number of publications held
}

// at returns the i-th oldest publication; i must be in [0, n).
func (r *pubRing) at(i int) *Publication {
	j := r.head + i
	if j >= len(r.buf) {
		j -= len(r.buf)
	}
	return &r.buf[j]
}

// push appends p; the ring must hold fewer than limit publications, so
// that at most limit remain.
func (r *pubRing) push(p Publication, limit int) {
	if len(r.buf) > limit {
		// The bound shrank: repack so the buffer does not outgrow it.
		r.resize(limit)
	}
	if r.n == len(r.buf) {
		r.resize(min(limit, max(minRingCap, 2*len(r.buf))))
	}
	*r.at(r.n) = p
	r.n++
}

// popFront drops the oldest publication, clearing its slot so the buffer
// does not keep its data reachable.
func (r *pubRing) popFront() {
	r.buf[r.head] = Publication{}
	r.head++
	if r.head == len(r.buf) {
		r.head = 0
	}
	r.n--
}

// resize moves the held publications into a new buffer of capacity c >= n.
func (r *pubRing) resize(c int) {
	buf := make([]Publication, c)
	for i := 0; i < r.n; i++ {
		buf[i] = *r.at(i)
	}
	r.buf, r.head = buf, 0
}

// clear drops every publication and releases the buffer.
func (r *pubRing) clear() {
	*r = pubRing{}
}

// streamRef names one epoch of one stream in the eviction queue. The queue
// tells stale entries from live ones through it without a shard lock, which
// it must not take (see MemoryLog's lock order).
type streamRef struct {
	name string // the stream's name, as keyed in its shard's map
	// low is the offset of the stream's oldest held publication, or the
	// next offset to be assigned when none is held, or math.MaxUint64 once
	// the epoch ended. Entries below it are stale. It only grows, so a
	// value read without the shard lock errs towards "live", and the
	// evictor checks again under the lock.
	low atomic.Uint64
}

func newStreamRef(name string) *streamRef {
	r := &streamRef{name: name}
	r.low.Store(1)
	return r
}

// kill marks every entry of the epoch stale.
func (r *streamRef) kill() { r.low.Store(math.MaxUint64) }

// evictEntry records that the publication at offset of ref's stream was
// appended.
type evictEntry struct {
	ref    *streamRef
	offset uint64
}

func (e evictEntry) stale() bool { return e.offset < e.ref.low.Load() }

// evictQueue is the log's record of append order for its budget: one entry
// per publication appended, oldest first. Entries whose publication went
// otherwise (count, age or stream cap, a restart, the sweep) go stale; pop
// skips them, and push compacts the queue once it holds twice as many
// entries as were live at the last compaction, so the queue stays within a
// small multiple of the publications held, at an amortized constant cost
// per push.
type evictQueue struct {
	mu        sync.Mutex   // guards the following; never held with a shard's mu
	q         []evictEntry // the entries from index head on, oldest first
	head      int
	compactAt int // queue length at which push compacts first
}

// push appends e at the tail.
func (f *evictQueue) push(e evictEntry) {
	f.mu.Lock()
	if len(f.q)-f.head >= f.compactAt {
		f.compactLocked()
	}
	if f.head > 0 && len(f.q) == cap(f.q) && f.head >= len(f.q)/2 {
		// Reuse the popped half rather than grow the array.
		n := copy(f.q, f.q[f.head:])
		clear(f.q[n:])
		f.q, f.head = f.q[:n], 0
	}
	f.q = append(f.q, e)
	f.mu.Unlock()
}

// pop removes and returns the oldest live entry; false when none is left.
func (f *evictQueue) pop() (evictEntry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.head < len(f.q) {
		e := f.q[f.head]
		f.q[f.head] = evictEntry{} // do not keep an ended epoch's ref reachable
		f.head++
		if !e.stale() {
			return e, true
		}
	}
	f.q, f.head = f.q[:0], 0
	return evictEntry{}, false
}

// compactLocked drops the stale entries, keeping the order of the others,
// and releases the array if it is mostly empty afterwards. f.mu must be
// held.
func (f *evictQueue) compactLocked() {
	live := f.q[f.head:]
	n := 0
	for _, e := range live {
		if !e.stale() {
			live[n] = e
			n++
		}
	}
	if cap(f.q) > 4*max(n, minQueueCompact) {
		q := make([]evictEntry, n, 2*n)
		copy(q, live[:n])
		f.q = q
	} else {
		k := copy(f.q, live[:n])
		clear(f.q[k:])
		f.q = f.q[:k]
	}
	f.head = 0
	f.compactAt = max(2*n, minQueueCompact)
}
