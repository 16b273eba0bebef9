// Package broker moves messages between nodes and keeps publications in
// order: a publish is stored in history and handed to every node's
// subscribers as one atomic step, so offsets reach subscribers in the order
// they were assigned. Ephemeral messages (whispers, presence diffs) cross
// nodes through it too, unordered and unstored.
//
// The memory broker serves a single node; the Redis broker in
// internal/broker/redis serves several. A broker must not encode wire
// messages or know about connections: it hands stored publications and
// opaque ephemeral payloads to a Handler.
package broker

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/huddle-rt/huddle/storage"
)

// Lost says which messages of a stream may have missed this node.
type Lost uint8

// Kinds of lost messages, for Handler.HandleLost.
const (
	// LostEphemeral: whispers or presence diffs relayed by other nodes may
	// have been lost (the node's subscription to the stream broke for a
	// while). Presence views built from diffs may be stale.
	LostEphemeral Lost = 1 << iota
	// LostPublications: publications may have been lost and history could
	// not fill the gap, so subscribers cannot continue in order.
	LostPublications
)

// Handler receives what the broker delivers to this node. Its methods must
// not block: they only enqueue (see LOCKING.md).
type Handler interface {
	// HandlePublication delivers a stored publication of a stream this
	// node is subscribed to. Per stream, calls come one at a time and in
	// offset order within an epoch; an offset may come again (a subscriber
	// drops what it has), but none is skipped without a HandleLost.
	HandlePublication(stream string, epoch string, pub storage.Publication)
	// HandleEphemeral delivers a payload another node gave PublishEphemeral
	// for a stream this node is subscribed to. payload stays valid and
	// unchanged for as long as the handler keeps it.
	HandleEphemeral(stream string, payload []byte)
	// HandleLost reports that messages of stream may have missed this
	// node's subscribers; lost says which.
	HandleLost(stream string, lost Lost)
}

// Broker stores and delivers publications and relays ephemeral messages.
type Broker interface {
	// Publish appends pub to stream's history and delivers it to every
	// node's Handler, this node's included. It returns the stored
	// publication and the stream's position after it.
	Publish(ctx context.Context, stream string, pub storage.Publication, opts storage.Options) (storage.Publication, storage.Position, error)
	// PublishBatch publishes items as Publish would, in their order: each
	// stream gets its items' offsets in the order they come in items. It
	// returns one Result per item and, if an item failed, the first
	// failure's error (naming the item's index); nil when all were stored.
	//
	// A failure never leaves a hole in a stream's run of the batch: once an
	// item fails, the later items of the same stream are not stored and
	// fail with ErrSkipped. Whether items of other streams after it are
	// stored depends on the broker (the memory broker stops the whole
	// batch; the Redis broker goes on with the other streams), so the
	// caller must look at every Result.
	PublishBatch(ctx context.Context, items []Item) ([]Result, error)
	// PublishEphemeral relays payload to the Handlers of the other nodes
	// subscribed to stream; never to this node's, as the caller delivered
	// it here already. It never blocks: an ephemeral message that cannot
	// be relayed (queue full, backend unreachable) is dropped. When
	// reportLoss is set (a presence diff, which a view built from diffs
	// cannot do without), the other nodes learn of the drop through
	// HandleLost; a dropped whisper is only gone (the next one supersedes
	// it). The caller must not modify payload afterwards.
	PublishEphemeral(stream string, payload []byte, reportLoss bool)
	// Subscribe tells the broker that one more local subscriber wants
	// stream. It returns once every message published from then on will
	// reach the Handler. Every call, whether or not it fails, must be
	// matched by one Unsubscribe.
	Subscribe(ctx context.Context, stream string) error
	// Unsubscribe drops one local subscriber of stream; with none left the
	// node stops receiving the stream.
	Unsubscribe(ctx context.Context, stream string) error
}

// Item is one publication of a PublishBatch, with the arguments Publish
// takes.
type Item struct {
	Stream string
	Pub    storage.Publication
	Opts   storage.Options
}

// Result is the outcome of one Item of a PublishBatch: the stored
// publication and the stream's position after it, or Err. An Err that is
// (or wraps) ErrSkipped or a refusal of the backend means the item was not
// stored; one wrapping storage.ErrUnavailable or the context's error means
// it may have been, as for Publish.
type Result struct {
	Pub storage.Publication
	Pos storage.Position
	Err error
}

// ErrSkipped is the error of a batch item that was not stored because an
// earlier item of the batch failed.
var ErrSkipped = errors.New("broker: not stored: an earlier item of the batch failed")

// Reporter is a Broker that counts notable events (for metrics), such as
// resubscriptions and dropped relays.
type Reporter interface {
	// Events returns each event's count since the broker started.
	Events() map[string]int64
}

const numStripes = 256

// Memory is the single-node broker: publications go from the history log
// straight to the local handler.
type Memory struct {
	log     storage.Log
	handler Handler
	seed    maphash.Seed
	stripes [numStripes]sync.Mutex
}

var _ Broker = (*Memory)(nil)

// NewMemory returns a broker that stores in log and delivers to h.
func NewMemory(log storage.Log, h Handler) *Memory {
	return &Memory{log: log, handler: h, seed: maphash.MakeSeed()}
}

// Publish stores pub and hands it to the handler while still holding the
// stream's stripe, so two concurrent publishes reach subscribers in offset
// order. The handler only enqueues (see LOCKING.md).
func (m *Memory) Publish(ctx context.Context, stream string, pub storage.Publication, opts storage.Options) (storage.Publication, storage.Position, error) {
	mu := &m.stripes[maphash.String(m.seed, stream)%numStripes]
	mu.Lock()
	defer mu.Unlock()
	stored, pos, err := m.log.Append(ctx, stream, pub, opts)
	if err != nil {
		return stored, pos, err
	}
	m.handler.HandlePublication(stream, pos.Epoch, stored)
	return stored, pos, nil
}

// PublishBatch publishes the items one after the other, each under its
// stream's stripe as Publish does. It stops at the first failure: every
// later item, of any stream, fails with ErrSkipped.
func (m *Memory) PublishBatch(ctx context.Context, items []Item) ([]Result, error) {
	res := make([]Result, len(items))
	for i, it := range items {
		pub, pos, err := m.Publish(ctx, it.Stream, it.Pub, it.Opts)
		if err != nil {
			res[i].Err = err
			for j := i + 1; j < len(items); j++ {
				res[j].Err = ErrSkipped
			}
			return res, fmt.Errorf("item %d: %w", i, err)
		}
		res[i] = Result{Pub: pub, Pos: pos}
	}
	return res, nil
}

// PublishEphemeral does nothing: there is no other node.
func (m *Memory) PublishEphemeral(string, []byte, bool) {}

// Subscribe does nothing: a single node delivers every stream.
func (m *Memory) Subscribe(context.Context, string) error { return nil }

// Unsubscribe does nothing.
func (m *Memory) Unsubscribe(context.Context, string) error { return nil }
