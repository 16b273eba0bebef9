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

// lostRetry is how soon a loss marker that could not be published is tried
// again.
const lostRetry = 250 * time.Millisecond

// relay is the queue of ephemeral messages waiting to be published. Callers
// never wait: a full queue drops. A stream that lost a message whose loss
// must be reported (a presence diff), to a full queue or a failed PUBLISH,
// is remembered: the sender then publishes a loss marker on it (lostMark),
// at most once per lostRetry, until one gets through, and the other nodes
// report the loss to their subscribers (HandleLost) instead of keeping a
// presence view that silently missed a diff. Lost whispers are not
// reported: the next one supersedes them, and a report would reconnect
// every presence subscriber of a busy cursor room for nothing.
type relay struct {
	max     int
	wake    chan struct{}
	done    chan struct{} // closed when the sender has exited
	dropped atomic.Int64

	mu     sync.Mutex // guards the following
	queue  []relayed
	lost   map[string]struct{} // streams owed a loss marker
	closed bool
}

type relayed struct {
	stream     string
	payload    []byte
	reportLoss bool
}

func (r *relay) init(max int) {
	r.max = max
	r.wake = make(chan struct{}, 1)
	r.done = make(chan struct{})
}

func (r *relay) put(stream string, payload []byte, reportLoss bool) {
	r.mu.Lock()
	if r.closed || len(r.queue) >= r.max {
		if !r.closed && reportLoss {
			r.markLostLocked(stream)
		}
		r.mu.Unlock()
		r.dropped.Add(1)
		return
	}
	r.queue = append(r.queue, relayed{stream, payload, reportLoss})
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *relay) markLostLocked(stream string) {
	if r.lost == nil {
		r.lost = make(map[string]struct{})
	}
	r.lost[stream] = struct{}{}
}

// markLost remembers that stream lost a message.
func (r *relay) markLost(stream string) {
	r.mu.Lock()
	r.markLostLocked(stream)
	r.mu.Unlock()
}

// take swaps the queue for spare and returns what was queued, and, with
// markers set, the streams owed a loss marker (forgotten here: a marker
// that fails is owed again). owed reports whether markers are still owed.
func (r *relay) take(spare []relayed, markers bool) (batch []relayed, lost []string, owed, closed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	batch, r.queue = r.queue, spare[:0]
	if markers {
		for s := range r.lost {
			lost = append(lost, s)
		}
		clear(r.lost)
	}
	return batch, lost, len(r.lost) > 0, r.closed
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
// once as one pipelined batch, and the loss markers owed (at most once per
// lostRetry), until the relay closes and is empty.
func (b *Broker) sendRelayed() {
	defer b.wg.Done()
	defer close(b.relay.done)
	var spare []relayed
	var cmds rueidis.Commands
	var markersAt time.Time // loss markers wait until then after a failure
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		markers := !time.Now().Before(markersAt)
		batch, lost, owed, closed := b.relay.take(spare, markers || b.relayClosing())
		if len(batch) == 0 && len(lost) == 0 {
			if closed && !owed {
				return
			}
			if closed { // owed markers: one last attempt
				markersAt = time.Time{}
				continue
			}
			if owed {
				retry.Reset(time.Until(markersAt))
				select {
				case <-retry.C:
				case <-b.relay.wake:
					retry.Stop()
				}
			} else {
				<-b.relay.wake
			}
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
		for _, s := range lost {
			cmds = append(cmds, b.publishCmd(b.channelName(s), string(lostMark)+b.node))
		}
		ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
		failed := false
		for i, res := range b.client.DoMulti(ctx, cmds...) {
			if err := res.Error(); err != nil {
				failed = true
				if i < len(batch) {
					b.relay.dropped.Add(1)
					if batch[i].reportLoss {
						b.relay.markLost(batch[i].stream)
					}
					b.warn("relaying an ephemeral message failed; dropped", "stream", batch[i].stream, "reported", batch[i].reportLoss, "err", err)
				} else {
					b.relay.markLost(lost[i-len(batch)])
				}
			}
		}
		cancel()
		clear(batch)
		spare = batch
		if failed {
			if closed {
				return // what is still owed is lost with this node
			}
			markersAt = time.Now().Add(lostRetry) // Redis is not taking writes
		}
	}
}

// relayClosing reports whether the relay is closed (its last markers go
// out without waiting).
func (b *Broker) relayClosing() bool {
	b.relay.mu.Lock()
	defer b.relay.mu.Unlock()
	return b.relay.closed
}
