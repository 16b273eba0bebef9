package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"time"
)

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
)

var _ Log = (*MemoryLog)(nil)

// MemoryLog is a Log held in process memory: the single-node default.
//
// Streams are spread over 64 shards, each guarded by one mutex, so appends
// to different streams rarely contend. Offsets are assigned under the
// shard's lock, atomically with storing the publication. Publication data is
// not copied: callers must not modify Data after Append, and must not modify
// the Data of publications returned by Read.
type MemoryLog struct {
	now    func() time.Time // injectable for tests
	shards [shardCount]memoryShard

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
}

// NewMemoryLog returns an empty MemoryLog with a background sweep that
// frees idle streams. Call Close to stop the sweep.
func NewMemoryLog() *MemoryLog {
	return newMemoryLog(time.Now, sweepInterval)
}

// newMemoryLog returns a MemoryLog reading time from now. A sweep interval
// of 0 starts no background goroutine.
func newMemoryLog(now func() time.Time, sweep time.Duration) *MemoryLog {
	m := &MemoryLog{now: now, stop: make(chan struct{})}
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
	s := sh.streamLocked(stream, now)
	s.opts = opts
	s.offset++
	s.metaExpires = now.Add(opts.MetaTTL)
	pub.Offset = s.offset
	pub.Time = now.UnixMilli()
	s.evictLocked(pub.Time)
	if opts.Size > 0 {
		s.ring.push(pub, opts.Size)
	} else {
		s.ring.clear() // the bound may have dropped to 0 since the last Append
	}
	pos := Position{Epoch: s.epoch, Offset: s.offset}
	sh.mu.Unlock()

	return pub, pos, nil
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
	s := sh.streamLocked(stream, now)
	res := Result{Top: Position{Epoch: s.epoch, Offset: s.offset}}
	if q.After.Epoch != "" && q.After.Epoch != s.epoch {
		return res, ErrEpochMismatch
	}
	after := q.After.Offset
	if after >= s.offset {
		// Nothing after the caller's position, so nothing can be missing.
		res.Complete = true
		return res, nil
	}
	s.evictLocked(now.UnixMilli())
	n := s.ring.n
	if n == 0 {
		return res, nil
	}
	oldest := s.ring.at(0).Offset
	res.Complete = oldest <= after+1
	first := 0 // index of the first publication with offset > after
	if after >= oldest {
		first = int(after - oldest + 1)
	}
	count := n - first
	if q.Limit > 0 && count > q.Limit {
		count = q.Limit
		res.More = true
	}
	res.Pubs = make([]Publication, count)
	if q.Reverse {
		for i := range res.Pubs {
			res.Pubs[i] = *s.ring.at(n - 1 - i)
		}
	} else {
		for i := range res.Pubs {
			res.Pubs[i] = *s.ring.at(first + i)
		}
	}
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
	s := sh.streamLocked(stream, now)
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

// streamLocked returns the named stream, creating it if unknown and
// restarting it with a new epoch if its meta has expired. sh.mu must be
// held.
func (sh *memoryShard) streamLocked(name string, now time.Time) *memoryStream {
	s, ok := sh.streams[name]
	if !ok {
		s = &memoryStream{
			epoch:       newEpoch(""),
			metaExpires: now.Add(DefaultMetaTTL),
			opts:        Options{MetaTTL: DefaultMetaTTL},
		}
		// Clone so the map never pins a caller's larger buffer the name
		// might have been sliced from.
		sh.streams[strings.Clone(name)] = s
		return s
	}
	if !now.Before(s.metaExpires) {
		// Restart from offset 0 with a new epoch, and drop the old window:
		// keeping it would hand old publications out under new offsets.
		s.epoch = newEpoch(s.epoch)
		s.offset = 0
		s.metaExpires = now.Add(s.opts.MetaTTL)
		s.ring.clear()
	}
	return s
}

// evictLocked drops publications older than the stream's TTL at nowMilli.
// The shard's mu must be held.
func (s *memoryStream) evictLocked(nowMilli int64) {
	if s.opts.TTL <= 0 {
		return
	}
	cutoff := nowMilli - s.opts.TTL.Milliseconds()
	for s.ring.n > 0 && s.ring.at(0).Time <= cutoff {
		s.ring.popFront()
	}
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
	for i := range m.shards {
		sh := &m.shards[i]
		now := m.now()
		nowMilli := now.UnixMilli()
		sh.mu.Lock()
		for name, s := range sh.streams {
			if !now.Before(s.metaExpires) {
				delete(sh.streams, name)
				continue
			}
			s.evictLocked(nowMilli)
			if s.ring.n == 0 {
				s.ring.buf = nil
				s.ring.head = 0
			}
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

// push appends p, evicting the oldest publications so at most limit
// remain. limit must be positive.
func (r *pubRing) push(p Publication, limit int) {
	for r.n >= limit {
		r.popFront()
	}
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
