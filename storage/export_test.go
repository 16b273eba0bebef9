package storage

import (
	"fmt"
	"time"
)

// NewMemoryLogWithClock returns a MemoryLog that reads time from now and
// runs no background sweep; tests call Sweep themselves.
func NewMemoryLogWithClock(now func() time.Time) *MemoryLog {
	return newMemoryLog(MemoryConfig{}, now, 0)
}

// NewMemoryLogWithConfigClock is NewMemoryLogWithClock with byte bounds.
func NewMemoryLogWithConfigClock(cfg MemoryConfig, now func() time.Time) *MemoryLog {
	return newMemoryLog(cfg, now, 0)
}

// UsedBytes returns the StoredBytes the log counts against its budget.
func (m *MemoryLog) UsedBytes() int64 { return m.used.Load() }

// QueueLen returns how many entries, stale or not, the eviction queue
// holds.
func (m *MemoryLog) QueueLen() int {
	m.queue.mu.Lock()
	defer m.queue.mu.Unlock()
	return len(m.queue.q) - m.queue.head
}

// SetMaxIdleStreams sets the stream count past which the sweep forgets
// empty streams, until the test ends.
func SetMaxIdleStreams(n int) (restore func()) {
	old := maxIdleStreams
	maxIdleStreams = n
	return func() { maxIdleStreams = old }
}

// Sweep runs one sweep now.
func (m *MemoryLog) Sweep() { m.sweep() }

// StreamCount returns how many streams the log remembers.
func (m *MemoryLog) StreamCount() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.streams)
		sh.mu.Unlock()
	}
	return n
}

// WindowCap returns the capacity of the stream's window buffer, or -1 if
// the stream is unknown.
func (m *MemoryLog) WindowCap(stream string) int {
	sh := m.shard(stream)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, ok := sh.streams[stream]
	if !ok {
		return -1
	}
	return len(s.ring.buf)
}

// ConsistencyCheck reports the first broken invariant of the log's
// internal state, or nil.
// The byte totals are only checked against each other when no Append,
// Read or sweep runs concurrently.
func (m *MemoryLog) ConsistencyCheck() error {
	total, docs := 0, 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for _, s := range sh.streams {
			if s.opts.Document {
				docs += s.bytes
			} else {
				total += s.bytes
			}
		}
		err := sh.consistencyCheckLocked(m)
		sh.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if used := m.docUsed.Load(); used != int64(docs) {
		return fmt.Errorf("log counts %d bytes of documents, its documents hold %d", used, docs)
	}
	if m.maxBytes == 0 {
		return nil
	}
	if used := m.used.Load(); used != int64(total) {
		return fmt.Errorf("log counts %d bytes used, its streams hold %d", used, total)
	}
	if total > m.maxBytes {
		return fmt.Errorf("log holds %d bytes, over its budget of %d", total, m.maxBytes)
	}
	return nil
}

func (sh *memoryShard) consistencyCheckLocked(m *MemoryLog) error {
	for name, s := range sh.streams {
		if m.shard(name) != sh {
			return fmt.Errorf("stream %q is in the wrong shard", name)
		}
		if len(s.epoch) != 16 {
			return fmt.Errorf("stream %q: epoch %q is not 8 bytes in hex", name, s.epoch)
		}
		r := &s.ring
		if r.n < 0 || r.n > len(r.buf) || (len(r.buf) > 0 && (r.head < 0 || r.head >= len(r.buf))) {
			return fmt.Errorf("stream %q: ring n=%d head=%d len=%d", name, r.n, r.head, len(r.buf))
		}
		if s.opts.Document {
			if err := s.docCheckLocked(name); err != nil {
				return err
			}
			continue
		}
		if s.snap != nil {
			return fmt.Errorf("stream %q: has a snapshot but is no document", name)
		}
		if r.n > s.opts.Size {
			return fmt.Errorf("stream %q: holds %d publications, size bound %d", name, r.n, s.opts.Size)
		}
		for j := 0; j < r.n; j++ {
			want := s.offset - uint64(r.n-1-j)
			if got := r.at(j).Offset; got != want {
				return fmt.Errorf("stream %q: window #%d has offset %d, want %d", name, j, got, want)
			}
		}
		bytes := 0
		for j := 0; j < r.n; j++ {
			bytes += r.at(j).StoredBytes()
		}
		if bytes != s.bytes {
			return fmt.Errorf("stream %q: counts %d bytes, its window holds %d", name, s.bytes, bytes)
		}
		if m.maxStreamBytes > 0 && bytes > m.maxStreamBytes && r.n > 1 {
			return fmt.Errorf("stream %q: holds %d bytes in %d publications, over its cap of %d", name, bytes, r.n, m.maxStreamBytes)
		}
		if (s.ref != nil) != (m.maxBytes > 0) {
			return fmt.Errorf("stream %q: has a queue ref %v with a budget of %d", name, s.ref != nil, m.maxBytes)
		}
		if s.ref != nil {
			low := s.offset + 1
			if r.n > 0 {
				low = r.at(0).Offset
			}
			if got := s.ref.low.Load(); got != low || s.ref.name != name {
				return fmt.Errorf("stream %q: queue ref %q low %d, want %d", name, s.ref.name, got, low)
			}
		}
		// Free slots must not keep evicted data reachable.
		for j := r.n; j < len(r.buf); j++ {
			p := r.at(j)
			if p.Data != nil || p.User != "" || p.Client != "" {
				return fmt.Errorf("stream %q: free slot %d still holds a publication", name, j)
			}
		}
	}
	return nil
}

// docCheckLocked checks a document stream: its window runs on from its
// snapshot to its top, its bytes count both, and the budget does not see it.
func (s *memoryStream) docCheckLocked(name string) error {
	r := &s.ring
	next := uint64(1)
	bytes := 0
	if s.snap != nil {
		next = s.snap.Offset + 1
		bytes = s.snap.StoredBytes()
	}
	if want := s.offset - next + 1; uint64(r.n) != want {
		return fmt.Errorf("document %q: holds %d publications after its snapshot, want %d", name, r.n, want)
	}
	for j := 0; j < r.n; j++ {
		if got := r.at(j).Offset; got != next+uint64(j) {
			return fmt.Errorf("document %q: window #%d has offset %d, want %d", name, j, got, next+uint64(j))
		}
		bytes += r.at(j).StoredBytes()
	}
	if bytes != s.bytes {
		return fmt.Errorf("document %q: counts %d bytes, holds %d", name, s.bytes, bytes)
	}
	if s.ref != nil {
		return fmt.Errorf("document %q: is in the eviction queue", name)
	}
	return nil
}
