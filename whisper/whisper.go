// Package whisper holds the policy of client-to-client ephemeral messages
// (cursors, selections, typing): the per-connection rate limit, the
// latest-value cache that lets late joiners see every cursor at once, and
// the conflation key that lets a newer whisper replace a queued older one.
//
// Whispers are never stored and carry no offset. This package does no I/O
// and knows nothing of connections or sockets; the server calls it.
package whisper

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/huddle-rt/huddle/protocol"
)

// Config tunes whispers. Zero fields take the defaults.
type Config struct {
	// Rate is the sustained whispers per second a connection may send.
	// Default 60.
	Rate float64
	// Burst is how many whispers a connection may send at once. Default 120.
	Burst int
	// MaxData bounds a whisper's data in bytes (msgpack). Default 4096.
	MaxData int
	// MaxEvents bounds the event names cached per sender and stream; a
	// sender over it replaces its oldest. Default 16.
	MaxEvents int
	// MaxCacheBytes bounds the latest-value cache of the whole node
	// (entryOverhead bytes per whisper besides its names and data). A
	// whisper that does not fit is relayed but not cached, and replaces
	// its sender's cached one of the same event by nothing, so a late
	// joiner never sees a stale value. Default 64 MiB.
	MaxCacheBytes int
}

// entryOverhead is what a cached whisper costs besides its strings and
// data: the struct, its place in the sender's list and the maps.
const entryOverhead = 96

// entrySize is what w costs in the cache.
func entrySize(w *protocol.Whisper) int64 {
	return int64(len(w.S) + len(w.Ev) + len(w.Data) + len(w.From.User) + len(w.From.Client) + entryOverhead)
}

// WithDefaults returns c with zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Rate <= 0 {
		c.Rate = 60
	}
	if c.Burst <= 0 {
		c.Burst = 120
	}
	if c.MaxData <= 0 {
		c.MaxData = 4096
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = 16
	}
	if c.MaxCacheBytes <= 0 {
		c.MaxCacheBytes = 64 << 20
	}
	return c
}

// Limiter is a token bucket with a once-per-second complaint. The zero value
// starts full. It is not safe for concurrent use: each connection's worker
// owns its own.
type Limiter struct {
	tokens   float64
	last     int64 // unix nanos of the last refill; 0 = never used
	lastWarn int64
}

// Allow takes a token at now (unix nanos). ok reports whether the whisper
// may go; warn reports whether the sender should be told it is over the
// limit (at most once a second).
func (l *Limiter) Allow(now int64, cfg *Config) (ok, warn bool) {
	if l.last == 0 {
		l.tokens, l.last = float64(cfg.Burst), now
	}
	l.tokens += float64(now-l.last) / float64(time.Second) * cfg.Rate
	if l.tokens > float64(cfg.Burst) {
		l.tokens = float64(cfg.Burst)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true, false
	}
	if now-l.lastWarn >= int64(time.Second) {
		l.lastWarn = now
		return false, true
	}
	return false, false
}

var keySeed = maphash.MakeSeed()

// Key is the conflation key of a whisper: equal for the same stream, sender
// connection and event name, and never 0.
func Key(stream, sender, ev string) uint64 {
	var h maphash.Hash
	h.SetSeed(keySeed)
	h.WriteString(stream)
	h.WriteByte(0)
	h.WriteString(sender)
	h.WriteByte(0)
	h.WriteString(ev)
	k := h.Sum64()
	if k == 0 {
		k = 1
	}
	return k
}

const cacheShards = 32

// Cache keeps the newest whisper per (stream, sender connection, event).
type Cache struct {
	cfg    Config
	seed   maphash.Seed
	bytes  atomic.Int64 // what the cached whispers cost, see entrySize
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu      sync.Mutex                               // guards streams
	streams map[string]map[string][]protocol.Whisper // stream -> sender -> newest per ev, oldest first
}

// NewCache returns an empty cache.
func NewCache(cfg Config) *Cache {
	c := &Cache{cfg: cfg.WithDefaults(), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].streams = make(map[string]map[string][]protocol.Whisper)
	}
	return c
}

func (c *Cache) shard(stream string) *cacheShard {
	return &c.shards[maphash.String(c.seed, stream)%cacheShards]
}

// Put records w as its sender's newest whisper of w.Ev on w.S. A sender at
// MaxEvents loses its oldest event first. It reports false when the node's
// cache is full: w is not cached, and neither is the sender's previous
// whisper of w.Ev.
func (c *Cache) Put(w protocol.Whisper) bool {
	size := entrySize(&w)
	sh := c.shard(w.S)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	senders := sh.streams[w.S]
	if senders == nil {
		senders = make(map[string][]protocol.Whisper)
		sh.streams[w.S] = senders
	}
	list := senders[w.From.Client]
	for i := range list {
		if list[i].Ev == w.Ev {
			old := entrySize(&list[i])
			if c.bytes.Load()+size-old > int64(c.cfg.MaxCacheBytes) {
				c.bytes.Add(-old)
				n := len(list) - 1
				copy(list[i:], list[i+1:])
				list[n] = protocol.Whisper{}
				list = list[:n]
				c.storeLocked(sh, w.S, w.From.Client, list)
				return false
			}
			c.bytes.Add(size - old)
			list[i] = w
			return true
		}
	}
	if len(list) >= c.cfg.MaxEvents {
		c.bytes.Add(-entrySize(&list[0]))
		copy(list, list[1:])
		list[len(list)-1] = protocol.Whisper{}
		list = list[:len(list)-1]
	}
	if c.bytes.Load()+size > int64(c.cfg.MaxCacheBytes) {
		c.storeLocked(sh, w.S, w.From.Client, list)
		return false
	}
	c.bytes.Add(size)
	senders[w.From.Client] = append(list, w)
	return true
}

// storeLocked sets a sender's list, forgetting empty lists and streams.
// sh.mu must be held.
func (c *Cache) storeLocked(sh *cacheShard, stream, sender string, list []protocol.Whisper) {
	senders := sh.streams[stream]
	if len(list) > 0 {
		senders[sender] = list
		return
	}
	delete(senders, sender)
	if len(senders) == 0 {
		delete(sh.streams, stream)
	}
}

// Bytes reports what the cached whispers cost, as counted against
// Config.MaxCacheBytes.
func (c *Cache) Bytes() int64 { return c.bytes.Load() }

// Snapshot returns the cached whispers of stream except those of the
// connection except (which may be ""), at most maxData bytes of them,
// counted as the cache counts them (0: no bound). A sender's whispers are returned all or none, so a reply
// in a crowded stream shows fewer senders, never half a sender.
func (c *Cache) Snapshot(stream, except string, maxData int) []protocol.Whisper {
	sh := c.shard(stream)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var out []protocol.Whisper
	total := 0
	for sender, list := range sh.streams[stream] {
		if sender == except {
			continue
		}
		n := 0
		for i := range list {
			n += int(entrySize(&list[i]))
		}
		if maxData > 0 && total+n > maxData {
			continue
		}
		total += n
		out = append(out, list...)
	}
	return out
}

// Drop forgets the whispers of sender on stream (it unsubscribed or left)
// and returns them, so the other subscribers can be told they are gone.
func (c *Cache) Drop(stream, sender string) []protocol.Whisper {
	sh := c.shard(stream)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	senders := sh.streams[stream]
	if senders == nil {
		return nil
	}
	gone := senders[sender]
	for i := range gone {
		c.bytes.Add(-entrySize(&gone[i]))
	}
	delete(senders, sender)
	if len(senders) == 0 {
		delete(sh.streams, stream)
	}
	return gone
}

// Len counts cached whispers, for tests and stats.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, senders := range sh.streams {
			for _, list := range senders {
				n += len(list)
			}
		}
		sh.mu.Unlock()
	}
	return n
}
