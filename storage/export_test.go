package storage

import (
	"fmt"
	"time"
)

// NewMemoryLogWithClock returns a MemoryLog that reads time from now and
// runs no background sweep; tests call Sweep themselves.
func NewMemoryLogWithClock(now func() time.Time) *MemoryLog {
	return newMemoryLog(now, 0)
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
func (m *MemoryLog) ConsistencyCheck() error {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		err := sh.consistencyCheckLocked(m)
		sh.mu.Unlock()
		if err != nil {
			return err
		}
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
		if r.n > s.opts.Size {
			return fmt.Errorf("stream %q: holds %d publications, size bound %d", name, r.n, s.opts.Size)
		}
		for j := 0; j < r.n; j++ {
			want := s.offset - uint64(r.n-1-j)
			if got := r.at(j).Offset; got != want {
				return fmt.Errorf("stream %q: window #%d has offset %d, want %d", name, j, got, want)
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
