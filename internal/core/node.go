// Package core is a node's protocol-agnostic heart: streams and their
// subscribers, publishing, history reads and recovery, presence, whispers
// and the per-connection session state behind every wire protocol
// (identity, subscriptions, presence joins, reply jobs).
//
// Its vocabulary is the protocol package's message types: operations take
// request values (protocol.Subscribe, protocol.SendWhisper...) and events
// are message values (protocol.Pub, protocol.Whisper, protocol.Presence,
// protocol.Subscribed...). It encodes none of them itself: a session's
// replies go through its Output, and what every subscriber of a stream
// receives alike through the node's Formats, encoded at most once per
// format. The one exception is the relay between nodes, which is huddle.v1
// msgpack.
//
// It must not hold a lock across I/O, a broker or storage call (see
// LOCKING.md), and it knows nothing of sockets or frames (internal/transport)
// or of any wire protocol's framing or handshake (internal/frontend/...).
package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/internal/hub"
	"github.com/huddle-rt/huddle/internal/ratelog"
	"github.com/huddle-rt/huddle/presence"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
	"github.com/huddle-rt/huddle/whisper"
)

// Config tunes a Node. The caller applies the defaults (server.Config
// documents them).
type Config struct {
	MaxMessage       int     // the largest message a session takes after connect
	MaxQueue         int     // a connection's queue bound in bytes: reply jobs are sized by it
	MaxSubscriptions int     // subscriptions (and presence joins) per connection
	MessageRate      float64 // messages a second a connection may send
	MessageBurst     int
	PingInterval     time.Duration // how often sessions ping; two silent intervals end one
	CompactEvery     int           // publications of a document between requests for a snapshot; 0: DefaultCompactEvery
	Whisper          whisper.Config
	Presence         presence.Config
	Logger           *slog.Logger
}

// Deps are the parts a Node is built on.
type Deps struct {
	// Auth verifies tokens and grants. Required.
	Auth *auth.Authenticator
	// Log is the history. Default: a new storage.MemoryLog.
	Log storage.Log
	// Presence stores members. Default: a new presence.MemoryStore.
	Presence presence.Store
	// NewBroker builds the broker that delivers to the node. Default: the
	// memory broker over Log.
	NewBroker func(h broker.Handler) (broker.Broker, error)
	// Events observes the node's streams, users and presence (webhooks).
	// Nil: nobody.
	Events Events
}

// Events observes what happens on a node, for telling the application
// (webhooks). Its methods must return at once: they run on hot paths (a
// subscribe, a close, the presence tick), take only leaf locks of their
// own and never wait on I/O. OnUserConnected may be called with the
// connection's lock held (a front-end that connects under it); the others
// are called with no core lock held.
type Events interface {
	// OnOccupied: stream got its first subscriber on this node.
	OnOccupied(stream string)
	// OnVacated: stream lost its last subscriber on this node. Every
	// OnOccupied is followed by one OnVacated, but calls of different
	// goroutines may arrive in either order.
	OnVacated(stream string)
	// OnUserConnected: a connection of user passed connect.
	OnUserConnected(user string)
	// OnUserDisconnected: a connection of user that passed connect closed.
	OnUserDisconnected(user string)
	// OnPresence: this node's presence tracker emitted diff (changes of
	// members this node joined, left or expired; not those relayed from
	// other nodes). diff must not be modified.
	OnPresence(stream string, diff *protocol.Presence)
}

// A Format is one wire encoding of what every subscriber of a stream
// receives alike: publications, whispers and presence diffs.
type Format struct {
	// Name names the format in errors ("huddle.v1+json").
	Name string
	// Textual marks a text encoding (JSON), which may spell data out
	// larger than a binary one: its reply steps read less.
	Textual bool
	// Relay marks huddle.v1 msgpack, the encoding relayed between nodes:
	// a relayed message is queued to its subscribers as it came.
	Relay bool
	// Encode encodes a *protocol.Pub, *protocol.Whisper or
	// *protocol.Presence.
	Encode func(m protocol.Message) ([]byte, error)
}

// Output encodes a session's replies for its wire protocol.
type Output interface {
	// Encode encodes m for the connection. Nil bytes with no error mean
	// the protocol has no such message: nothing is sent.
	Encode(m protocol.Message) ([]byte, error)
}

// Liveness is an Output whose protocol sends a recovering subscribe's
// missed publications as messages of their own after the subscribe's reply,
// not inside it, and says when a subscription has caught up.
type Liveness interface {
	// Live returns the message queued when a subscription to stream goes
	// live, after every missed publication and before any live one.
	// recovered is nil when the subscribe did not ask to recover. Nil: no
	// message.
	Live(stream string, recovered *bool) []byte
}

// PresenceFilter is an Output whose protocol sees presence differently
// from huddle.v1 (Action Cable counts one member per id, however many
// connections it has): each presence diff is turned into the connection's
// own messages, from the diff's frame in the connection's Format, instead
// of the shared frame being queued.
type PresenceFilter interface {
	PresenceDiff(stream string, frame []byte) [][]byte
}

// Granter is an Output whose protocol grants a session more than its
// identity does: streams whose access the protocol proved otherwise (an
// Action Cable signed stream name).
type Granter interface {
	// Grants reports whether op on stream is granted.
	Grants(op auth.Op, stream string) bool
}

// MemberInfo is an Output whose protocol gives a session's presence member
// other info in some streams than its identity's (a subscribe hook's
// answer).
type MemberInfo interface {
	// MemberInfo returns the member's info in stream (msgpack); nil: the
	// identity's.
	MemberInfo(stream string) protocol.Raw
}

// A Wrapper turns a shared frame into the messages one subscription
// receives: an Action Cable frame carries the subscription's channel
// identifier before the shared body. Subscriptions that share a Wrapper
// (the same identifier) share its output for each broadcast, so a frame is
// wrapped once per identifier, not once per subscriber.
type Wrapper struct {
	wrap func(frame []byte) [][]byte

	mu      sync.Mutex // guards the memo
	lastIn  *byte      // the frame wrapped last (kept alive, so never reused)
	lastOut [][]byte
}

// NewWrapper returns a Wrapper applying wrap.
func NewWrapper(wrap func(frame []byte) [][]byte) *Wrapper { return &Wrapper{wrap: wrap} }

// Apply wraps frame as apply does, for a Wrapper made of others. The
// result is shared: do not modify it.
func (w *Wrapper) Apply(frame []byte) [][]byte { return w.apply(frame) }

// apply wraps frame, or returns the memo when frame was wrapped last.
func (w *Wrapper) apply(frame []byte) [][]byte {
	if len(frame) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lastIn == &frame[0] {
		return w.lastOut
	}
	out := w.wrap(frame)
	w.lastIn, w.lastOut = &frame[0], out
	return out
}

// Node is the core of one Huddle node.
type Node struct {
	cfg      Config
	log      *slog.Logger
	auth     *auth.Authenticator
	history  storage.Log
	broker   broker.Broker
	relaying bool // the broker relays ephemeral messages to other nodes
	hub      *hub.Hub
	whispers *whisper.Cache
	// updateLimit is the presence update rate limit, as a token bucket.
	updateLimit whisper.Config
	// msgLimit is the inbound message rate limit.
	msgLimit whisper.Config
	presence *presence.Tracker
	events   Events // nil: none
	metrics  *Metrics
	formats  []*Format // by index; fixed before the first session
	relayFmt int       // index of the Relay format, -1 if none
	direct   sync.Map  // stream -> func([]byte): ListenDirect's handlers
	// authRefusals limits the log of refused connections (bad, expired
	// or missing tokens) to a line every 10 seconds.
	authRefusals ratelog.Limiter
}

// New builds a node. Register its formats with AddFormat before sessions
// start.
func New(cfg Config, deps Deps) (*Node, error) {
	if deps.Auth == nil {
		return nil, errors.New("core: Deps.Auth is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger,
		auth:     deps.Auth,
		hub:      hub.New(),
		whispers: whisper.NewCache(cfg.Whisper),
		metrics:  newMetrics(),
		relayFmt: -1,
		events:   deps.Events,
	}
	n.authRefusals.Every = 10 * time.Second
	n.history = deps.Log
	if n.history == nil {
		n.history = storage.NewMemoryLog()
	}
	newBroker := deps.NewBroker
	if newBroker == nil {
		newBroker = func(h broker.Handler) (broker.Broker, error) { return broker.NewMemory(n.history, h), nil }
	}
	var err error
	if n.broker, err = newBroker(n); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	_, single := n.broker.(*broker.Memory)
	n.relaying = !single
	store := deps.Presence
	if store == nil {
		store = presence.NewMemoryStore()
	}
	n.presence = presence.NewTracker(cfg.Presence, store, n.emitPresence)
	n.updateLimit = whisper.Config{Rate: cfg.Presence.UpdateRate, Burst: cfg.Presence.UpdateBurst}.WithDefaults()
	n.msgLimit = whisper.Config{Rate: cfg.MessageRate, Burst: cfg.MessageBurst}.WithDefaults()
	return n, nil
}

// AddFormat registers a format and returns its index, for sessions that
// receive it (NewSession). At most hub.MaxFormats.
func (node *Node) AddFormat(f *Format) int {
	if len(node.formats) >= hub.MaxFormats {
		panic("core: more than hub.MaxFormats formats")
	}
	node.formats = append(node.formats, f)
	i := len(node.formats) - 1
	if f.Relay && node.relayFmt < 0 {
		node.relayFmt = i
	}
	return i
}

// encodeShared encodes m in format, logging a failure (nil bytes are then
// queued to nobody).
func (node *Node) encodeShared(format int, m protocol.Message) []byte {
	if format >= len(node.formats) {
		return nil
	}
	b, err := node.formats[format].Encode(m)
	if err != nil {
		node.log.Error("encode failed", "type", m.Type(), "format", node.formats[format].Name, "err", err)
	}
	return b
}

// frames returns m's frames, encoded lazily once per format.
func (node *Node) frames(m protocol.Message) *hub.Frames {
	return hub.NewFrames(func(format int) []byte { return node.encodeShared(format, m) })
}

// relayBytes returns what goes to the other nodes for m: its frame in the
// Relay format, or huddle.v1 msgpack encoded here.
func (node *Node) relayBytes(frames *hub.Frames, m protocol.Message) []byte {
	if node.relayFmt >= 0 {
		return frames.For(node.relayFmt)
	}
	b, _ := protocol.AppendMessage(protocol.Msgpack, nil, m)
	return b
}

// Logger returns the node's logger.
func (node *Node) Logger() *slog.Logger { return node.log }

// Metrics returns the node's counters.
func (node *Node) Metrics() *Metrics { return node.metrics }

// Auth returns the node's authenticator.
func (node *Node) Auth() *auth.Authenticator { return node.auth }

// Relaying reports whether the broker relays to other nodes (history then
// outlives this node).
func (node *Node) Relaying() bool { return node.relaying }

// Broker returns the node's broker.
func (node *Node) Broker() broker.Broker { return node.broker }

// Stats returns the streams and subscriptions on this node.
func (node *Node) Stats() (streams, subscriptions int) { return node.hub.Stats() }

// TopStreams returns the n streams with the most subscribers on this node.
func (node *Node) TopStreams(n int) []hub.StreamCount { return node.hub.Top(n) }

// WhispersCached returns the number of cached whispers.
func (node *Node) WhispersCached() int { return node.whispers.Len() }

// ReadHistory reads a stream's history.
func (node *Node) ReadHistory(ctx context.Context, stream string, q storage.Query) (storage.Result, error) {
	return node.history.Read(ctx, stream, q)
}

// Members returns a stream's presence.
func (node *Node) Members(ctx context.Context, stream string) ([]protocol.Member, error) {
	return node.presence.Members(ctx, stream)
}

// Deliverable reports why data could not be published on stream by the
// HTTP API (see deliverable).
func (node *Node) Deliverable(stream string, data []byte) error {
	return node.deliverable(stream, "", "", data)
}

// PublishBatch publishes pubs[i] on streams[i].
func (node *Node) PublishBatch(ctx context.Context, streams []string, pubs []storage.Publication) ([]broker.Result, error) {
	return node.publishBatch(ctx, streams, pubs)
}

// Close stops presence (its last leaves go out through the broker), then
// the broker and the history.
func (node *Node) Close() {
	node.presence.Close()
	if c, ok := node.broker.(interface{ Close() error }); ok {
		_ = c.Close()
	}
	if c, ok := node.history.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// MessageRate returns the inbound message rate limit (per second, burst).
func (node *Node) MessageRate() (float64, int) { return node.cfg.MessageRate, node.cfg.MessageBurst }
