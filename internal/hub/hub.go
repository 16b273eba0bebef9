// Package hub holds which subscribers each stream has on this node and fans
// a message out to them.
//
// It is protocol-agnostic: it deals in stream names, subscribers and frames
// pre-encoded per wire format, never in one protocol's message structs. A
// broadcast encodes at most once per wire format present among the stream's
// subscribers and hands the same bytes to each; it never blocks on a
// subscriber, does no I/O and calls nothing but Subscriber.Deliver under its
// locks (see LOCKING.md at the repository root).
package hub

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
)

// MaxFormats bounds the number of wire formats a node serves at once.
const MaxFormats = 8

// Message describes one fanned-out message besides its bytes.
type Message struct {
	// Offset is a publication's offset; 0 for ephemeral messages.
	Offset uint64
	// Epoch is a publication's epoch; "" for ephemeral messages.
	Epoch string
	// Key lets a subscriber conflate: a newer message with the same non-zero
	// key may replace one still queued. 0 never conflates.
	Key uint64
	// Kind tells subscribers that filter what the message is; the hub does
	// not look at it.
	Kind uint8
}

// Subscriber is one subscription of one connection to one stream.
type Subscriber interface {
	// Format is the index of the subscriber's wire format (< MaxFormats).
	Format() int
	// Deliver queues frame for the subscriber. Deliver must not block; it
	// may take the subscriber's connection lock. frame is shared by every
	// subscriber of the format and must not be modified.
	Deliver(m Message, frame []byte)
}

// Frames holds one message encoded per wire format, encoding lazily: the
// first subscriber of a format triggers its encoding, the rest share it.
type Frames struct {
	frames  [MaxFormats][]byte
	encoded [MaxFormats]bool
	encode  func(format int) []byte
}

// NewFrames returns Frames that encode with encode on first use per format.
func NewFrames(encode func(format int) []byte) *Frames {
	return &Frames{encode: encode}
}

// For returns the message in format, encoding it on first use.
func (f *Frames) For(format int) []byte {
	if !f.encoded[format] {
		f.frames[format] = f.encode(format)
		f.encoded[format] = true
	}
	return f.frames[format]
}

const numShards = 64

// Hub is the node's subscription table, sharded by stream name.
type Hub struct {
	seed   maphash.Seed
	shards [numShards]shard
}

type shard struct {
	mu      sync.Mutex // guards streams
	streams map[string]*stream
}

type stream struct {
	subs []Subscriber
	idx  map[Subscriber]int
}

// New returns an empty hub.
func New() *Hub {
	h := &Hub{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].streams = make(map[string]*stream)
	}
	return h
}

func (h *Hub) shard(name string) *shard {
	return &h.shards[maphash.String(h.seed, name)%numShards]
}

// Subscribe adds s to stream. first reports that s is the stream's first
// subscriber on this node (the caller then subscribes the node to the
// stream in the broker). Adding s twice is a no-op.
func (h *Hub) Subscribe(name string, s Subscriber) (first bool) {
	sh := h.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.streams[name]
	if st == nil {
		st = &stream{idx: make(map[Subscriber]int, 1)}
		sh.streams[name] = st
		first = true
	}
	if _, ok := st.idx[s]; ok {
		return false
	}
	st.idx[s] = len(st.subs)
	st.subs = append(st.subs, s)
	return first
}

// Unsubscribe removes s from stream. last reports that the stream has no
// subscriber left on this node.
func (h *Hub) Unsubscribe(name string, s Subscriber) (last bool) {
	sh := h.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.streams[name]
	if st == nil {
		return false
	}
	i, ok := st.idx[s]
	if !ok {
		return false
	}
	end := len(st.subs) - 1
	if i != end {
		moved := st.subs[end]
		st.subs[i] = moved
		st.idx[moved] = i
	}
	st.subs[end] = nil
	st.subs = st.subs[:end]
	delete(st.idx, s)
	if len(st.subs) == 0 {
		delete(sh.streams, name)
		return true
	}
	if cap(st.subs) > 64 && len(st.subs) < cap(st.subs)/4 {
		st.subs = append([]Subscriber(nil), st.subs...)
	}
	return false
}

// Broadcast delivers the message in f to every subscriber of stream except
// skip (which may be nil), and returns how many received it.
func (h *Hub) Broadcast(name string, m Message, f *Frames, skip Subscriber) int {
	sh := h.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.streams[name]
	if st == nil {
		return 0
	}
	n := 0
	for _, s := range st.subs {
		if s == skip {
			continue
		}
		s.Deliver(m, f.For(s.Format()))
		n++
	}
	return n
}

// Subscribers returns how many subscribers stream has on this node.
func (h *Hub) Subscribers(name string) int {
	sh := h.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if st := sh.streams[name]; st != nil {
		return len(st.subs)
	}
	return 0
}

// Stats counts streams with local subscribers and subscriptions.
func (h *Hub) Stats() (streams, subscriptions int) {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		streams += len(sh.streams)
		for _, st := range sh.streams {
			subscriptions += len(st.subs)
		}
		sh.mu.Unlock()
	}
	return streams, subscriptions
}

// StreamCount is a stream and its local subscribers.
type StreamCount struct {
	Stream      string
	Subscribers int
}

// Top returns the n streams with the most local subscribers, most first.
// It holds each shard's lock only to copy its counts.
func (h *Hub) Top(n int) []StreamCount {
	var all []StreamCount
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for name, st := range sh.streams {
			all = append(all, StreamCount{Stream: name, Subscribers: len(st.subs)})
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(all, func(a, b StreamCount) int {
		if a.Subscribers != b.Subscribers {
			return b.Subscribers - a.Subscribers
		}
		return strings.Compare(a.Stream, b.Stream)
	})
	return all[:min(n, len(all))]
}
