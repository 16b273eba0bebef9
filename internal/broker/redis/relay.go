package redis

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// relayTimeout bounds one batch of ephemeral PUBLISHes.
const relayTimeout = time.Second

// relay is the queue of ephemeral messages waiting to be published. Callers
// never wait: a full queue drops.
type relay struct {
	max     int
	wake    chan struct{}
	done    chan struct{} // closed when the sender has exited
	dropped atomic.Int64

	mu     sync.Mutex // guards the following
	queue  []relayed
	closed bool
}

type relayed struct {
	stream  string
	payload []byte
}

func (r *relay) init(max int) {
	r.max = max
	r.wake = make(chan struct{}, 1)
	r.done = make(chan struct{})
}

func (r *relay) put(stream string, payload []byte) {
	r.mu.Lock()
	if r.closed || len(r.queue) >= r.max {
		r.mu.Unlock()
		r.dropped.Add(1)
		return
	}
	r.queue = append(r.queue, relayed{stream, payload})
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take swaps the queue for spare and returns what was queued.
func (r *relay) take(spare []relayed) (batch []relayed, closed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	batch, r.queue = r.queue, spare[:0]
	return batch, r.closed
}

func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// sendRelayed publishes queued ephemeral messages, everything queued at
// once as one pipelined batch, until the relay closes and is empty.
func (b *Broker) sendRelayed() {
	defer b.wg.Done()
	defer close(b.relay.done)
	var batch, spare []relayed
	var cmds rueidis.Commands
	for {
		var closed bool
		batch, closed = b.relay.take(spare)
		if len(batch) == 0 {
			if closed {
				return
			}
			<-b.relay.wake
			spare = batch
			continue
		}
		cmds = cmds[:0]
		for _, m := range batch {
			msg := make([]byte, 0, 2+len(b.node)+len(m.payload))
			msg = append(msg, ephemeralMark)
			msg = append(msg, b.node...)
			msg = append(msg, ':')
			msg = append(msg, m.payload...)
			cmds = append(cmds, b.publishCmd(b.channelName(m.stream), rueidis.BinaryString(msg)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
		for _, res := range b.client.DoMulti(ctx, cmds...) {
			if err := res.Error(); err != nil {
				b.relay.dropped.Add(1)
				b.warn("relaying an ephemeral message failed; dropped", "err", err)
			}
		}
		cancel()
		clear(batch)
		spare = batch
	}
}
