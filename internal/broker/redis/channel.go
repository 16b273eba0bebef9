package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/storage"
	redislog "github.com/huddle-rt/huddle/storage/redis"
)

// errStopped fails the Subscribe calls still waiting when the broker
// closes.
var errStopped = errors.New("subscription stopped")

// channel is the node's subscription to one stream's channel. One goroutine
// (run) keeps it subscribed while the stream has local subscribers; the
// messages it receives are delivered in channel order under mu, which is
// also what gap fills take to deliver theirs.
type channel struct {
	b      *Broker
	stream string
	name   string
	wake   chan struct{} // cuts run's pause short when the last subscriber left

	// Guarded by b.mu.
	refs   int
	cancel context.CancelFunc // ends the current attempt

	mu        sync.Mutex // guards the following
	attempt   uint64     // identifies the current attempt; confirmations of older ones are ignored
	gen       uint64     // bumped when the last local subscriber left: delivery state starts over
	confirmed bool       // the current attempt is subscribed
	broken    bool       // a confirmed subscription ended while subscribers stayed: messages may be lost
	waiters   []chan error
	// pos is the highest position delivered, or the stream's top read
	// right after the first confirmation (baseline), when known.
	pos        storage.Position
	known      bool
	delivered  bool // pos is the last publication handed over, not a baseline
	baselining bool
	catching   bool        // a gap fill runs; live publications wait in pending
	again      bool        // the subscription broke again while a gap fill ran
	lost       broker.Lost // to report before the next gap fill read
	pending    []livePub
	overflow   bool // pending was full and a publication was dropped
}

type livePub struct {
	epoch string
	pub   storage.Publication
}

func newChannel(b *Broker, stream string) *channel {
	return &channel{b: b, stream: stream, name: b.channelName(stream), wake: make(chan struct{}, 1)}
}

// stopLocked ends the current attempt and forgets the delivery state: no
// local subscriber is left (or the broker closes). run then exits unless a
// Subscribe revives the channel first. Lock b.mu must be held.
func (ch *channel) stopLocked() {
	if cancel := ch.cancel; cancel != nil {
		ch.cancel = nil
		if ch.b.closed {
			cancel()
		} else {
			// Unsubscribe in Redis and let Receive end on the reply, reading
			// on meanwhile: cancelling Receive first would stop it reading
			// the channel's messages, and on a busy channel the connection's
			// reader then blocks on the full buffer, so the UNSUBSCRIBE reply
			// (and every other stream's messages) waited for a timeout.
			ch.b.wg.Add(1)
			go ch.unsubscribe(cancel)
		}
	}
	select {
	case ch.wake <- struct{}{}:
	default:
	}
	ch.mu.Lock()
	ch.attempt++
	ch.gen++
	ch.confirmed, ch.broken = false, false
	ch.known, ch.delivered, ch.catching, ch.again, ch.overflow = false, false, false, false, false
	ch.lost = 0
	clear(ch.pending)
	ch.pending = ch.pending[:0]
	ch.mu.Unlock()
}

// unsubscribe sends UNSUBSCRIBE (SUNSUBSCRIBE) for an attempt that
// stopLocked ended, then cancels the attempt's Receive in case the reply did
// not end it (an error, a timeout).
func (ch *channel) unsubscribe(cancel context.CancelFunc) {
	defer ch.b.wg.Done()
	defer cancel()
	ctx, done := context.WithTimeout(ch.b.ctx, 2*time.Second)
	defer done()
	_ = ch.b.pubsub.Do(ctx, unsubscribeCmd(ch.b.pubsub, ch.b.cfg.Sharded, ch.name)).Error()
}

// run keeps the channel subscribed while it has local subscribers: one
// Receive call per attempt, a pause with backoff after an attempt that
// ended by itself (a broken connection, a refused SUBSCRIBE, an unsubscribe
// pushed by Redis on a slot migration).
func (ch *channel) run() {
	b := ch.b
	defer b.wg.Done()
	failures := 0
	for {
		b.mu.Lock()
		if ch.refs <= 0 || b.closed {
			if b.channels[ch.stream] == ch {
				delete(b.channels, ch.stream)
			}
			b.mu.Unlock()
			ch.failWaiters(errStopped)
			return
		}
		// The attempt's id and cancel func are set together under b.mu, so
		// a stopLocked either comes before the attempt or ends it and
		// voids its confirmation.
		ctx, cancel := context.WithCancel(b.ctx)
		ch.cancel = cancel
		ch.mu.Lock()
		ch.attempt++
		attempt := ch.attempt
		ch.mu.Unlock()
		b.mu.Unlock()

		err := ch.receive(ctx, attempt)
		ch.mu.Lock()
		superseded := ch.attempt != attempt
		ch.mu.Unlock()
		// Unsubscribe or Close ended it (and reset the state), by cancelling
		// or by unsubscribing in Redis.
		stopped := ctx.Err() != nil || superseded
		cancel()
		if stopped {
			continue
		}
		ch.mu.Lock()
		wasConfirmed := ch.confirmed && ch.attempt == attempt
		if wasConfirmed {
			ch.confirmed, ch.broken = false, true
		}
		waiters := ch.waiters
		ch.waiters = nil
		ch.mu.Unlock()
		if wasConfirmed {
			failures = 0
		}
		failures++
		if err == nil {
			err = errors.New("unsubscribed by the server")
		}
		werr := err
		if _, isRedisErr := rueidis.IsRedisErr(err); !isRedisErr {
			werr = fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
		}
		for _, w := range waiters {
			w <- werr
		}
		b.warn("redis subscription lost; subscribing again", "stream", ch.stream, "err", err)
		if !b.sleep(b.backoff(failures), ch.wake) {
			// The broker closes: release Subscribe calls still waiting.
			b.mu.Lock()
			if b.channels[ch.stream] == ch {
				delete(b.channels, ch.stream)
			}
			b.mu.Unlock()
			ch.failWaiters(errStopped)
			return
		}
	}
}

// receive runs one attempt: SUBSCRIBE (or SSUBSCRIBE) and the messages
// until the attempt ends. When ctx ends it, the channel is unsubscribed on
// the same connection before Receive returns.
func (ch *channel) receive(ctx context.Context, attempt uint64) error {
	sharded := ch.b.cfg.Sharded
	hctx := rueidis.WithOnSubscriptionHook(ctx, func(s rueidis.PubSubSubscription) {
		if s.Kind == "subscribe" || s.Kind == "ssubscribe" {
			ch.confirm(attempt)
		}
	})
	hctx = rueidis.WithOnReceiveReturnHook(hctx, func(err error, c rueidis.CommandClient) error {
		if ctx.Err() != nil {
			uctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = c.Do(uctx, unsubscribeCmd(c, sharded, ch.name)).Error()
		}
		return err
	})
	return ch.b.pubsub.Receive(hctx, ch.b.subscribeCmd(ch.name), func(m rueidis.PubSubMessage) {
		ch.onMessage(attempt, m)
	})
}

// confirm records Redis's confirmation of attempt. It runs on the client's
// pipeline goroutine, so it must not block or call Redis: waiting
// Subscribe calls are released, and after a break a gap fill starts on a
// goroutine of its own.
func (ch *channel) confirm(attempt uint64) {
	ch.mu.Lock()
	if attempt != ch.attempt || ch.confirmed {
		ch.mu.Unlock()
		return
	}
	ch.confirmed = true
	waiters := ch.waiters
	ch.waiters = nil
	if ch.broken {
		ch.broken = false
		ch.b.resubscribed.Add(1)
		ch.catchUpLocked(broker.LostEphemeral)
	}
	ch.mu.Unlock()
	for _, w := range waiters {
		w <- nil
	}
}

// wait returns once the channel is subscribed, or with the error of the
// attempt that failed meanwhile, or ctx's.
func (ch *channel) wait(ctx context.Context) error {
	ch.mu.Lock()
	if ch.confirmed {
		ch.mu.Unlock()
		return nil
	}
	w := make(chan error, 1)
	ch.waiters = append(ch.waiters, w)
	ch.mu.Unlock()
	select {
	case err := <-w:
		return err
	case <-ctx.Done():
		ch.mu.Lock()
		for i, x := range ch.waiters {
			if x == w {
				ch.waiters = append(ch.waiters[:i], ch.waiters[i+1:]...)
				break
			}
		}
		ch.mu.Unlock()
		return ctx.Err()
	}
}

func (ch *channel) failWaiters(err error) {
	ch.mu.Lock()
	waiters := ch.waiters
	ch.waiters = nil
	ch.mu.Unlock()
	for _, w := range waiters {
		w <- err
	}
}

// baseline reads the stream's top once the channel is first subscribed,
// unless a publication arrived already: a later gap fill needs to know
// where delivery stood. Without it, a break before the first publication
// is reported as a loss.
func (ch *channel) baseline(ctx context.Context) {
	ch.mu.Lock()
	if ch.known || ch.baselining {
		ch.mu.Unlock()
		return
	}
	ch.baselining = true
	gen := ch.gen
	ch.mu.Unlock()
	top, err := ch.b.log.Top(ctx, ch.stream)
	ch.mu.Lock()
	ch.baselining = false
	if err == nil && gen == ch.gen && !ch.known {
		ch.pos, ch.known = top, true
	}
	ch.mu.Unlock()
}

// onMessage handles one message of the channel, in channel order.
func (ch *channel) onMessage(attempt uint64, m rueidis.PubSubMessage) {
	msg := m.Message
	if msg == "" {
		return
	}
	ch.mu.Lock()
	stale := ch.attempt != attempt // arrived after stopLocked, before the UNSUBSCRIBE reply
	ch.mu.Unlock()
	if stale {
		return
	}
	if msg[0] == ephemeralMark {
		node, payload, ok := strings.Cut(msg[1:], ":")
		if ok && node != ch.b.node {
			ch.b.handler.HandleEphemeral(ch.stream, []byte(payload))
		}
		return
	}
	if msg[0] == lostMark {
		if msg[1:] != ch.b.node {
			ch.b.handler.HandleLost(ch.stream, broker.LostEphemeral)
		}
		return
	}
	env, err := redislog.DecodeEnvelope([]byte(msg))
	if err != nil {
		ch.b.warn("undecodable message on a stream channel", "stream", ch.stream, "err", err)
		return
	}
	pub, err := decodePub(env)
	if err != nil {
		ch.b.warn("undecodable publication on a stream channel", "stream", ch.stream, "err", err)
		return
	}
	ch.onPub(env.Position.Epoch, pub)
}

// onPub delivers a live publication, holds it while a gap fill runs, or
// starts one when it does not follow the last delivered.
func (ch *channel) onPub(epoch string, pub storage.Publication) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	switch {
	case ch.known && ch.delivered && epoch == ch.pos.Epoch && pub.Offset <= ch.pos.Offset:
		// Handed over already: a gap fill read it from history before its
		// message arrived here.
	case ch.catching:
		if len(ch.pending) < ch.b.cfg.MaxPending {
			ch.pending = append(ch.pending, livePub{epoch, pub})
		} else {
			ch.overflow = true
		}
	case ch.followsLocked(epoch, pub.Offset):
		ch.deliverLocked(epoch, pub)
	default:
		ch.b.gaps.Add(1)
		ch.pending = append(ch.pending, livePub{epoch, pub})
		ch.catchUpLocked(0)
	}
}

// followsLocked reports whether a publication may be delivered after pos:
// the next offset or an older one (after a baseline; subscribers drop what
// they have), or the first of a new epoch. Lock ch.mu must be held.
func (ch *channel) followsLocked(epoch string, offset uint64) bool {
	if !ch.known {
		return true
	}
	if epoch == ch.pos.Epoch {
		return offset <= ch.pos.Offset+1
	}
	return offset == 1
}

// deliverLocked hands a publication to the handler and advances pos. Lock
// ch.mu must be held.
func (ch *channel) deliverLocked(epoch string, pub storage.Publication) {
	ch.b.handler.HandlePublication(ch.stream, epoch, pub)
	if !ch.known || epoch != ch.pos.Epoch || pub.Offset > ch.pos.Offset {
		ch.pos, ch.known = storage.Position{Epoch: epoch, Offset: pub.Offset}, true
		ch.delivered = true
	}
}

// catchUpLocked starts a gap fill unless one runs (which then reads again),
// noting lost for the handler. Lock ch.mu must be held.
func (ch *channel) catchUpLocked(lost broker.Lost) {
	ch.lost |= lost
	if ch.catching {
		ch.again = true
		return
	}
	ch.catching = true
	ch.b.wg.Add(1) // run holds the group open: called from its attempt
	go ch.catchUp(ch.gen)
}

// catchUp fills a gap: it reads the publications after pos from history and
// delivers them, then the live ones held meanwhile. When history cannot
// (another epoch, trimmed, unknown pos) it reports the loss instead.
func (ch *channel) catchUp(gen uint64) {
	b := ch.b
	defer b.wg.Done()
	for attempt := 1; ; attempt++ {
		ch.mu.Lock()
		if ch.gen != gen {
			ch.mu.Unlock()
			return
		}
		lost := ch.lost
		ch.lost, ch.again = 0, false
		from, known, overflow := ch.pos, ch.known, ch.overflow
		ch.mu.Unlock()
		if lost != 0 {
			b.handler.HandleLost(ch.stream, lost)
		}
		if !known || overflow {
			ch.giveUp(gen)
			return
		}
		ctx, cancel := context.WithTimeout(b.ctx, readTimeout)
		res, err := b.log.Read(ctx, ch.stream, storage.Query{After: from})
		cancel()
		if errors.Is(err, storage.ErrEpochMismatch) {
			ch.giveUp(gen)
			return
		}
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			b.warn("reading history to fill a gap failed; trying again", "stream", ch.stream, "err", err)
			if !b.sleep(b.backoff(attempt), nil) {
				return
			}
			continue
		}
		ch.mu.Lock()
		if ch.gen != gen {
			ch.mu.Unlock()
			return
		}
		if ch.again {
			ch.mu.Unlock() // the read may predate the latest resubscription
			continue
		}
		if !res.Complete || ch.overflow {
			ch.mu.Unlock()
			ch.giveUp(gen)
			return
		}
		for _, p := range res.Pubs {
			if p.Offset > ch.pos.Offset {
				ch.deliverLocked(res.Top.Epoch, p)
			}
		}
		if !ch.drainLocked() {
			ch.mu.Unlock()
			ch.giveUp(gen)
			return
		}
		ch.catching = false
		ch.mu.Unlock()
		return
	}
}

// drainLocked delivers the held live publications that history did not
// hold already; it reports false at the first that does not follow. Lock
// ch.mu must be held.
func (ch *channel) drainLocked() bool {
	for i, p := range ch.pending {
		if p.epoch == ch.pos.Epoch && p.pub.Offset <= ch.pos.Offset {
			continue
		}
		if !ch.followsLocked(p.epoch, p.pub.Offset) {
			ch.pending = append(ch.pending[:0], ch.pending[i:]...)
			return false
		}
		ch.deliverLocked(p.epoch, p.pub)
	}
	clear(ch.pending)
	ch.pending = ch.pending[:0]
	return true
}

// giveUp reports a gap history could not fill, then delivers what was held
// (to subscribers that arrive from now on) and starts over from it. Live
// publications keep waiting in pending until then, so none reaches a
// subscriber before it was told of the loss.
func (ch *channel) giveUp(gen uint64) {
	ch.mu.Lock()
	stale := ch.gen != gen // every subscriber left meanwhile: newer ones missed nothing
	ch.mu.Unlock()
	if stale {
		return
	}
	ch.b.lost.Add(1)
	ch.b.handler.HandleLost(ch.stream, broker.LostPublications|broker.LostEphemeral)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.gen != gen {
		return
	}
	ch.known, ch.delivered = false, false
	for _, p := range ch.pending {
		ch.deliverLocked(p.epoch, p.pub)
	}
	clear(ch.pending)
	ch.pending = ch.pending[:0]
	ch.catching, ch.again, ch.overflow = false, false, false
	ch.lost = 0
}
