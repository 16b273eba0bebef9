// Package broker moves publications between nodes and keeps their order:
// a publish is stored in history and handed to every node's subscribers as
// one atomic step, so offsets reach subscribers in the order they were
// assigned.
//
// The memory broker serves a single node. It must not encode wire messages
// or know about connections: it hands stored publications to a Handler.
package broker

import (
	"context"
	"hash/maphash"
	"sync"

	"github.com/huddle-rt/huddle/storage"
)

// Handler receives publications for streams this node is subscribed to, in
// offset order per stream.
type Handler interface {
	HandlePublication(stream string, epoch string, pub storage.Publication)
}

// Broker stores and delivers publications.
type Broker interface {
	// Publish appends pub to stream's history and delivers it to every
	// node's Handler. It returns the stored publication and the stream's
	// position after it.
	Publish(ctx context.Context, stream string, pub storage.Publication, opts storage.Options) (storage.Publication, storage.Position, error)
	// Subscribe tells the broker this node has subscribers of stream;
	// Unsubscribe that it has none left.
	Subscribe(ctx context.Context, stream string) error
	Unsubscribe(ctx context.Context, stream string) error
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

// Subscribe does nothing: a single node delivers every stream.
func (m *Memory) Subscribe(context.Context, string) error { return nil }

// Unsubscribe does nothing.
func (m *Memory) Unsubscribe(context.Context, string) error { return nil }
