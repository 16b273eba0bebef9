package core

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/internal/hub"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
	"github.com/huddle-rt/huddle/whisper"
)

// Bounds of what a subscription holds while it is not live yet: live
// publications (maxRecoverBuffer of them, and at most a quarter of the
// connection's queue bound in bytes; beyond either they are dropped and read
// from history instead), and whispers and presence diffs until subscribed
// is queued (as many, and as many bytes). Only the subscribe first in line
// on a connection holds any: the others are not registered yet.
const maxRecoverBuffer = 10000

// subscription is one connection's subscription to one stream. Until it is
// live it buffers live publications, so the subscribed reply, the recovered
// history and the live stream join with no gap or duplicate.
type subscription struct {
	c        *Session
	stream   string
	presence bool                    // wants presence diffs
	recover  uint8                   // the subscribe asked to recover: recoverAsked, then recoverOK or recoverFailed
	wrap     atomic.Pointer[Wrapper] // nil: frames go out as encoded; see Rewrap

	// Guarded by c.mu.
	pend  *pending // what the subscription holds until it is live; nil once live
	epoch string   // epoch of last
	last  uint64   // offset of the last publication queued; later ones must exceed it
	// registered is set once subscribe has added the subscription to the
	// hub and the broker; dropped, when whoever took it from c.subs before
	// that left the undoing to subscribe.
	registered, dropped bool
}

// States of subscription.recover.
const (
	recoverNone = iota
	recoverOK
	recoverFailed
)

// pending is what a subscription holds until it is live: the live
// publications it buffers (instead of queueing them), and the whispers and
// presence diffs that arrive before subscribed is queued.
type pending struct {
	waiting bool  // subscribed is not queued yet: whispers and presence diffs are held in bufW
	since   int64 // recover the publications stored since this time (unix ms) instead of from a position
	// skipped is set when buf outgrew its bounds and was dropped; the next
	// history read, which starts after skipped is cleared, covers it.
	skipped  bool
	buf      []buffered // publications
	bufBytes int
	bufW     []buffered // whispers (conflated by key) and presence diffs, while waiting
	bufWSize int
	wDrops   int // presence diffs dropped from bufW
}

type buffered struct {
	offset uint64
	epoch  string
	key    uint64
	frame  []byte
}

var _ hub.Subscriber = (*subscription)(nil)

func (s *subscription) Format() int { return s.c.Format() }

// Deliver queues a frame for the connection, or buffers it while the
// subscribe is still reading history. A publication that does not follow
// the last one queued closes the connection with 4010: the client recovers
// on reconnect rather than see a gap.
func (s *subscription) Deliver(m hub.Message, frame []byte) {
	c := s.c
	offset := m.Offset
	switch m.Kind {
	case kindPresence:
		if !s.presence {
			return
		}
	case kindLostPresence, kindLost:
		if m.Kind == kindLostPresence && !s.presence {
			return
		}
		c.tc.Lock()
		start := c.closeLocked(protocol.CodeInsufficientState, "messages of this stream may have been lost: subscribe again with recover", true)
		c.tc.Unlock()
		if start {
			c.tc.Kick()
		}
		return
	}
	var more [][]byte // a Wrapper's or a PresenceFilter's messages after the first
	var pf PresenceFilter
	if m.Kind == kindPresence {
		pf, _ = c.out.(PresenceFilter)
	}
	if pf != nil {
		msgs := pf.PresenceDiff(s.stream, frame)
		if len(msgs) == 0 {
			return
		}
		frame, more = msgs[0], msgs[1:]
	} else if w := s.wrap.Load(); w != nil {
		msgs := w.apply(frame)
		if len(msgs) == 0 {
			return
		}
		frame, more = msgs[0], msgs[1:]
	}
	c.tc.Lock()
	if p := s.pend; p != nil {
		if offset == 0 && p.waiting {
			p.bufferEphemeralLocked(c.node.replyRoom(), m.Key, frame)
			for _, f := range more {
				p.bufferEphemeralLocked(c.node.replyRoom(), 0, f)
			}
			c.tc.Unlock()
			return
		}
		if offset > 0 {
			p.bufferPubLocked(c.node.replyRoom(), offset, m.Epoch, frame)
			c.tc.Unlock()
			return
		}
	}
	if offset > 0 {
		if m.Epoch != s.epoch {
			// A new epoch restarts the offsets at 1; anything else means
			// publications were lost in between.
			if s.epoch != "" && offset != 1 {
				s.gapLocked()
				return
			}
			if s.epoch != "" {
				s.last = 0
			}
			s.epoch = m.Epoch
		}
		// A publication stored before the subscribe read the stream's top
		// may reach the hub after the subscribe completed: it was already
		// accounted for (in subscribed.offset or .pubs), so drop it.
		if offset <= s.last {
			c.tc.Unlock()
			return
		}
		if offset != s.last+1 {
			s.gapLocked()
			return
		}
		s.last = offset
	}
	start := c.enqueueLocked(frame, m.Key)
	for _, f := range more {
		start = c.enqueueLocked(f, 0) || start
	}
	c.tc.Unlock()
	if start {
		c.tc.Kick()
	}
}

// gapLocked closes the connection after a live publication skipped
// offsets, and releases c.mu. Lock c.mu must be held.
func (s *subscription) gapLocked() {
	c := s.c
	c.node.metrics.Drops[DropLiveGap].Add(1)
	start := c.closeLocked(protocol.CodeInsufficientState, "publications of this stream were lost: subscribe again with recover", true)
	c.tc.Unlock()
	if start {
		c.tc.Kick()
	}
}

// bufferPubLocked holds a live publication until the subscription is live.
// Past the bounds the buffer is dropped: those publications are in the
// history, and the catch-up reads them from there. Lock c.mu must be held.
func (s *pending) bufferPubLocked(maxBytes int, offset uint64, epoch string, frame []byte) {
	if s.skipped {
		return
	}
	if len(s.buf) >= maxRecoverBuffer || s.bufBytes+len(frame) > maxBytes {
		clear(s.buf)
		s.buf, s.bufBytes, s.skipped = nil, 0, true
		return
	}
	s.buf = append(s.buf, buffered{offset: offset, epoch: epoch, frame: frame})
	s.bufBytes += len(frame)
}

// bufferEphemeralLocked holds a whisper (the newest per key) or a presence
// diff until subscribed is queued. A presence diff past the bounds is
// dropped and counted: one dropped before the presence snapshot is read is
// in the snapshot, one dropped after fails the subscribe (see announce).
// Lock c.mu must be held.
func (s *pending) bufferEphemeralLocked(maxBytes int, key uint64, frame []byte) {
	if key != 0 {
		for i := range s.bufW {
			if s.bufW[i].key == key {
				s.bufWSize += len(frame) - len(s.bufW[i].frame)
				s.bufW[i].frame = frame
				return
			}
		}
	}
	if len(s.bufW) >= maxRecoverBuffer || s.bufWSize+len(frame) > maxBytes {
		if key == 0 {
			s.wDrops++
		}
		return
	}
	s.bufW = append(s.bufW, buffered{key: key, frame: frame})
	s.bufWSize += len(frame)
}

// reserve adds a subscription to stream to the connection, not yet
// registered anywhere (see register); the error is a wire error to answer
// the sub with.
func (node *Node) reserve(c *Session, stream string, wantPresence bool, w *Wrapper) (*subscription, *protocol.Error) {
	sub := &subscription{c: c, stream: stream, presence: wantPresence, pend: &pending{waiting: true}}
	sub.wrap.Store(w)
	c.tc.Lock()
	defer c.tc.Unlock()
	if !c.tc.OpenLocked() || c.findSubLocked(stream) >= 0 {
		return nil, protocol.NewError(protocol.CodeBadRequest, "already subscribed")
	}
	if len(c.subs) >= node.cfg.MaxSubscriptions {
		return nil, protocol.NewError(protocol.CodeRateLimited, "too many subscriptions on one connection (limit "+strconv.Itoa(node.cfg.MaxSubscriptions)+")")
	}
	c.subs = append(c.subs, sub)
	return sub, nil
}

// register adds a reserved subscription to the hub and the broker, from
// when on it buffers live publications. It runs as the subscribe's first
// step, so a subscribe that waits for room holds nothing. The error is a
// wire error to answer the sub with.
func (node *Node) register(sub *subscription) *protocol.Error {
	c, stream := sub.c, sub.stream
	// The hub first, so that the subscription buffers whatever the broker
	// delivers from the moment its Subscribe returns.
	if node.hub.Subscribe(stream, sub) && node.events != nil {
		node.events.OnOccupied(stream)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	err := node.broker.Subscribe(ctx, stream)
	cancel()
	node.metrics.Subscriptions.Add(1)
	c.tc.Lock()
	sub.registered = true
	dropped := sub.dropped
	c.tc.Unlock()
	if dropped {
		// The connection closed or unsubscribed meanwhile; its unsubscribe
		// left this to us.
		node.release(sub)
		return protocol.NewError(protocol.CodeBadRequest, "unsubscribed before the subscribe completed")
	}
	if err != nil {
		node.log.Warn("broker subscribe failed", "stream", stream, "err", err)
		node.dropSubscription(sub)
		return protocol.NewError(protocol.CodeInternal, "subscribe failed: "+err.Error())
	}
	return nil
}

// unsubscribe removes sub from the hub and the broker (the caller removed
// it from its connection). A subscription that subscribe is still
// registering is left for subscribe to remove.
func (node *Node) unsubscribe(sub *subscription) {
	c := sub.c
	c.tc.Lock()
	if !sub.registered {
		sub.dropped = true
		c.tc.Unlock()
		return
	}
	c.tc.Unlock()
	node.release(sub)
}

// release undoes a registered subscription: whisper cache, hub, broker.
func (node *Node) release(sub *subscription) {
	var gone []protocol.Whisper
	if sub.c.clientID != "" {
		gone = node.whispers.Drop(sub.stream, sub.c.clientID)
	}
	if node.hub.Unsubscribe(sub.stream, sub) && node.events != nil {
		node.events.OnVacated(sub.stream)
	}
	// The others still show the sender's latest whispers (a cursor): tell
	// them they are gone with a null whisper of each cached event, as a
	// client's own hide would.
	for _, w := range gone {
		if !w.Data.IsNil() {
			w.Data = protocol.RawNil
			node.fanOutWhisper(&w, nil)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	if err := node.broker.Unsubscribe(ctx, sub.stream); err != nil {
		node.log.Warn("broker unsubscribe failed", "stream", sub.stream, "err", err)
	}
	cancel()
	node.metrics.Subscriptions.Add(-1)
}

// announce is a subscribe's first step (see subscribeJob): it reads the
// stream's position, and the first missed publications when the client
// asked to recover, and queues subscribed with the presence snapshot and
// the latest whispers. ok is false when the subscribe failed (the error is
// sent); done is false when missed or skipped publications remain for
// catchUp.
func (node *Node) announce(sub *subscription, m *protocol.Subscribe) (ok, done bool) {
	c := sub.c
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	c.tc.Lock()
	sub.resumeLocked()
	c.tc.Unlock()

	reply := &protocol.Subscribed{ID: m.ID, S: m.S}
	_, apart := c.out.(Liveness) // missed publications go as messages of their own
	var history []storage.Publication
	var after uint64
	more, snap := false, false
	var err error
	since := sub.pend.since
	// A document is sent whole to a subscriber that does not recover, or
	// cannot: its snapshot and every publication since.
	doc := node.auth.StreamOptions(m.S).Document
	reply.Doc = doc
	if m.Recover != nil || since > 0 || doc {
		from := storage.Position{}
		if m.Recover != nil {
			from = storage.Position{Epoch: m.Recover.Epoch, Offset: m.Recover.Offset}
		}
		read := func() (storage.Result, error) {
			return node.history.Read(ctx, m.S, storage.Query{
				After:    from,
				MaxBytes: node.stepBytes(c.textual()),
				Limit:    node.stepPubs(c.textual(), m.S),
			})
		}
		var res storage.Result
		res, err = read()
		recovered := err == nil && res.Complete && from.Offset <= res.Top.Offset
		if since > 0 && err == nil && !res.Complete && len(res.Pubs) > 0 && res.Pubs[0].Time <= since {
			// Not all of history, but all of it since the time asked for.
			recovered = true
		}
		if errors.Is(err, storage.ErrEpochMismatch) {
			err = nil
		}
		deliver := recovered
		if doc && !recovered && err == nil {
			from = storage.Position{}
			res, err = read()
			deliver = err == nil && res.Complete
		}
		reply.Epoch, reply.Offset = res.Top.Epoch, res.Top.Offset
		if m.Recover != nil || since > 0 {
			reply.Recovered = &recovered
			sub.recover = recoverFailed
			if recovered {
				sub.recover = recoverOK
			}
		}
		if deliver {
			history, after, more, snap = res.Pubs, from.Offset, res.More, res.Snapshot
			if since > 0 && len(history) > 0 {
				after = history[0].Offset - 1
			}
			if !apart {
				reply.Pubs = WirePubs(m.S, res.Top.Epoch, history, snap)
			}
		} else {
			after = res.Top.Offset
		}
	} else {
		var top storage.Position
		top, err = node.history.Top(ctx, m.S)
		reply.Epoch, reply.Offset, after = top.Epoch, top.Offset, top.Offset
	}
	if err != nil {
		node.dropSubscription(sub)
		c.sendError(m.ID, m.S, protocol.CodeInternal, "subscribe failed: "+err.Error())
		return false, true
	}
	c.tc.Lock()
	wDrops := sub.pend.wDrops
	c.tc.Unlock()
	reply.LV = node.whispers.Snapshot(m.S, c.clientID, node.stepBytes(c.textual()))
	if sub.presence {
		members, err := node.presence.Members(ctx, m.S)
		if err != nil {
			node.dropSubscription(sub)
			c.sendError(m.ID, m.S, protocol.CodeInternal, "subscribe failed: "+err.Error())
			return false, true
		}
		reply.Members = members // omitted when empty: nobody is here
	}
	frame, err := c.encode(reply)
	var pubFrames [][]byte
	if apart && err == nil {
		pubFrames, err = c.encodePubs(m.S, reply.Epoch, history, since, snap)
	}
	if err != nil {
		node.dropSubscription(sub)
		c.sendError(m.ID, m.S, protocol.CodeInternal, "subscribe failed: "+err.Error())
		return false, true
	}
	if len(reply.Members) > 0 && len(frame) > node.maxReply() {
		// Queued, it would close the connection with 4008, and so would
		// every resubscribe: say why instead.
		node.dropSubscription(sub)
		c.sendError(m.ID, m.S, protocol.CodeTooLarge, snapshotTooLarge(len(reply.Members), len(frame)))
		return false, true
	}

	c.tc.Lock()
	if !c.ownsLocked(sub) {
		// Unsubscribed or closed during the reads: whoever took it
		// releases it, and nothing more is said.
		c.tc.Unlock()
		return false, true
	}
	sub.epoch, sub.last = reply.Epoch, after
	if len(history) > 0 {
		sub.last = history[len(history)-1].Offset
	}
	var gapErr error
	if !more && !sub.pend.skipped {
		gapErr = sub.checkLiveLocked()
	}
	if sub.pend.wDrops != wDrops {
		gapErr = errors.New("too many presence diffs arrived during the subscribe")
	}
	if gapErr != nil {
		sub.pend.buf = nil
		c.tc.Unlock()
		node.dropSubscription(sub)
		node.metrics.Drops[DropRecoveryGap].Add(1)
		c.sendError(m.ID, m.S, protocol.CodeInsufficientState, "could not guarantee order: "+gapErr.Error())
		return false, true
	}
	kick := c.enqueueLocked(frame, 0)
	for _, f := range pubFrames {
		kick = c.enqueueLocked(f, 0) || kick
	}
	for _, b := range sub.pend.bufW {
		kick = c.enqueueLocked(b.frame, b.key) || kick
	}
	sub.pend.bufW, sub.pend.bufWSize, sub.pend.waiting = nil, 0, false
	done = !more && !sub.pend.skipped
	if done {
		kick = sub.goLiveLocked() || kick
	}
	c.tc.Unlock()
	node.metrics.CountOut(protocol.TypeSubscribed, 1)
	if kick {
		c.tc.Kick()
	}
	return true, done
}

// catchUp is a later step of a subscribe: it queues the next missed
// publications after the last one queued, as pub messages, and makes the
// subscription live once it has reached the stream's top with nothing
// skipped. Publications that left the history before they could be sent
// close the connection with 4010, so that the client resubscribes and is
// told recovered: false rather than miss them.
func (node *Node) catchUp(sub *subscription) (done bool) {
	c := sub.c
	c.tc.Lock()
	sub.resumeLocked()
	pos := storage.Position{Epoch: sub.epoch, Offset: sub.last}
	since := sub.pend.since
	c.tc.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	res, err := node.history.Read(ctx, sub.stream, storage.Query{After: pos, MaxBytes: node.stepBytes(c.textual()), Limit: node.stepPubs(c.textual(), sub.stream)})
	cancel()
	if err != nil || !res.Complete {
		reason := "publications of this stream left the history before they could be sent: subscribe again with recover"
		if err != nil && !errors.Is(err, storage.ErrEpochMismatch) {
			reason = "could not read the missed publications (" + err.Error() + "): subscribe again with recover"
		}
		node.metrics.Drops[DropRecoveryGap].Add(1)
		c.closeWith(protocol.CodeInsufficientState, reason, true)
		return true
	}
	frames, err := c.encodePubs(sub.stream, pos.Epoch, res.Pubs, since, res.Snapshot)
	if err != nil {
		node.log.Error("encode publication failed", "stream", sub.stream, "err", err)
		c.closeWith(protocol.CodeInternal, "could not encode a missed publication", true)
		return true
	}
	node.metrics.CountOut(protocol.TypePub, len(frames))

	c.tc.Lock()
	if !c.ownsLocked(sub) {
		c.tc.Unlock()
		return true
	}
	kick := false
	for i, f := range frames {
		kick = c.enqueueLocked(f, 0) || kick
		sub.last = res.Pubs[i].Offset
	}
	if !res.More && !sub.pend.skipped {
		if err := sub.checkLiveLocked(); err != nil {
			sub.gapLocked() // releases c.mu
			return true
		}
		kick = sub.goLiveLocked() || kick
		done = true
	}
	c.tc.Unlock()
	if kick {
		c.tc.Kick()
	}
	return done
}

// resumeLocked starts buffering live publications afresh after the buffer
// was dropped; the history read that follows covers what it held. Lock
// c.mu must be held.
func (s *subscription) resumeLocked() {
	if p := s.pend; p.skipped {
		p.skipped = false
		p.buf, p.bufBytes = nil, 0
	}
}

// checkLiveLocked reports whether the buffered live publications continue
// the ones queued (up to s.last) with no hole. The history read just
// reached the top it saw, and every publication delivered since the last
// resume is buffered, so a hole means publications were lost on the way.
// Lock c.mu must be held.
func (s *subscription) checkLiveLocked() error {
	last := s.last
	for _, b := range s.pend.buf {
		if b.epoch != s.epoch {
			return errors.New("the stream's epoch changed during the subscribe")
		}
		if b.offset <= last {
			continue
		}
		if b.offset != last+1 {
			return fmt.Errorf("live publication %d came after %d", b.offset, last)
		}
		last++
	}
	return nil
}

// goLiveLocked queues the buffered live publications that follow s.last
// (checkLiveLocked vouched for them) and makes the subscription live. It
// reports whether a worker must be kicked. Lock c.mu must be held.
func (s *subscription) goLiveLocked() (kick bool) {
	c := s.c
	for _, b := range s.pend.buf {
		if b.offset <= s.last {
			continue
		}
		kick = c.enqueueLocked(b.frame, 0) || kick
		s.last = b.offset
	}
	clear(s.pend.buf)
	s.pend = nil
	if lv, ok := c.out.(Liveness); ok {
		var recovered *bool
		if s.recover != recoverNone {
			ok := s.recover == recoverOK
			recovered = &ok
		}
		kick = c.enqueueLocked(lv.Live(s.stream, recovered), 0) || kick
	}
	return kick
}

// encodePubs encodes stored publications as pub messages with the
// session's Output, leaving out those stored before since (unix ms); snap
// says that pubs[0] is a document's snapshot.
func (c *Session) encodePubs(stream, epoch string, pubs []storage.Publication, since int64, snap bool) ([][]byte, error) {
	frames := make([][]byte, 0, len(pubs))
	for i := range pubs {
		if pubs[i].Time < since {
			continue
		}
		w := wirePub(stream, epoch, &pubs[i])
		if snap && i == 0 {
			w.Snap = snapFlag
		}
		f, err := c.encode(&w)
		if err != nil {
			return nil, err
		}
		if len(f) > 0 {
			frames = append(frames, f)
		}
	}
	return frames, nil
}

// dropSubscription undoes subscribe after a failure.
func (node *Node) dropSubscription(sub *subscription) {
	c := sub.c
	c.tc.Lock()
	i := c.findSubLocked(sub.stream)
	owned := i >= 0 && c.subs[i] == sub
	if owned {
		c.takeSubLocked(sub.stream)
	}
	c.tc.Unlock()
	if owned {
		node.unsubscribe(sub)
	}
}

// publish stores and delivers a publication, with the stream's history
// bounds from the rules.
func (node *Node) publish(ctx context.Context, stream string, pub storage.Publication) (storage.Publication, storage.Position, error) {
	p, pos, err := node.broker.Publish(ctx, stream, pub, node.storageOptions(stream))
	if err == nil {
		node.metrics.Published.Add(1)
	}
	return p, pos, err
}

// storageOptions are the history bounds of stream, from the rules.
func (node *Node) storageOptions(stream string) storage.Options {
	opts := node.auth.StreamOptions(stream)
	return storage.Options{Size: opts.HistorySize, TTL: opts.HistoryTTL, Document: opts.Document}
}

// publishBatch publishes pubs[i] to streams[i], in order, as one broker
// batch; see broker.Broker.PublishBatch for what a failure leaves stored.
func (node *Node) publishBatch(ctx context.Context, streams []string, pubs []storage.Publication) ([]broker.Result, error) {
	items := make([]broker.Item, len(pubs))
	for i, pub := range pubs {
		items[i] = broker.Item{Stream: streams[i], Pub: pub, Opts: node.storageOptions(streams[i])}
	}
	res, err := node.broker.PublishBatch(ctx, items)
	for _, r := range res {
		if r.Err == nil {
			node.metrics.Published.Add(1)
		}
	}
	return res, err
}

// HandlePublication delivers a stored publication to this node's
// subscribers, encoding it once per wire format in use.
func (node *Node) HandlePublication(stream, epoch string, pub storage.Publication) {
	start := time.Now()
	w := wirePub(stream, epoch, &pub)
	frames := node.frames(&w)
	n := node.hub.Broadcast(stream, hub.Message{Offset: pub.Offset, Epoch: epoch}, frames, nil)
	node.metrics.CountOut(protocol.TypePub, n)
	now := time.Now()
	node.metrics.observePublish(now.Sub(start))
	if n > 0 {
		node.metrics.observeDeliver(pub.Time, now)
	}
}

// HandleEphemeral delivers a whisper or presence diff that another node
// relayed, as that node delivered it to its own subscribers: payload is the
// message in msgpack, queued as it is to msgpack subscribers.
func (node *Node) HandleEphemeral(stream string, payload []byte) {
	if strings.HasPrefix(stream, directPrefix) {
		if h, ok := node.direct.Load(stream); ok {
			h.(func([]byte))(payload)
		}
		return
	}
	var arr [1]protocol.Decoded
	msgs, err := protocol.DecodeServer(protocol.Msgpack, payload, arr[:0])
	if err != nil || len(msgs) != 1 || msgs[0].Err != nil {
		node.log.Warn("undecodable message relayed by another node", "stream", stream, "err", err)
		return
	}
	msg := msgs[0].Msg
	frames := hub.NewFrames(func(format int) []byte {
		if format == node.relayFmt {
			return payload
		}
		return node.encodeShared(format, msg)
	})
	switch m := msg.(type) {
	case *protocol.Whisper:
		if m.S != stream {
			return
		}
		// Same key as on the sender's node: a newer whisper of the same
		// sender and event replaces a queued one here too.
		n := node.hub.Broadcast(stream, hub.Message{Key: whisper.Key(stream, m.From.Client, m.Ev)}, frames, nil)
		node.metrics.CountOut(protocol.TypeWhisper, n)
	case *protocol.Presence:
		if m.S != stream {
			return
		}
		n := node.hub.Broadcast(stream, hub.Message{Kind: kindPresence}, frames, nil)
		node.metrics.CountOut(protocol.TypePresence, n)
	}
}

// HandleLost closes, with 4010 and reconnect, the connections whose
// subscription to stream may have missed messages, so that they subscribe
// again with recover: every subscriber when publications were lost, those
// that receive presence when only ephemeral messages were.
func (node *Node) HandleLost(stream string, lost broker.Lost) {
	kind := uint8(kindLostPresence)
	if lost&broker.LostPublications != 0 {
		kind = kindLost
	}
	n := node.hub.Broadcast(stream, hub.Message{Kind: kind}, noFrames(), nil)
	node.metrics.Drops[DropBrokerLost].Add(1)
	node.log.Warn("messages of a stream may have been lost on the way to this node; its subscribers reconnect to recover",
		"stream", stream, "publications", lost&broker.LostPublications != 0, "subscriptions", n)
}

// noFrames is for hub messages that carry no bytes.
func noFrames() *hub.Frames { return hub.NewFrames(func(int) []byte { return nil }) }

// relay hands a whisper or presence diff m that was delivered here to the
// broker for the other nodes, in huddle.v1 msgpack. A lost presence diff is
// reported to them (reportLoss), a lost whisper is not.
func (node *Node) relay(stream string, frames *hub.Frames, m protocol.Message, reportLoss bool) {
	if node.relaying {
		node.broker.PublishEphemeral(stream, node.relayBytes(frames, m), reportLoss)
	}
}

// findSubLocked returns the index of the subscription to stream, or -1.
// Lock c.mu must be held.
func (c *Session) findSubLocked(stream string) int {
	for i, s := range c.subs {
		if s.stream == stream {
			return i
		}
	}
	return -1
}

// takeSubLocked removes and returns the subscription to stream, or nil.
// Lock c.mu must be held.
func (c *Session) takeSubLocked(stream string) *subscription {
	i := c.findSubLocked(stream)
	if i < 0 {
		return nil
	}
	sub := c.subs[i]
	last := len(c.subs) - 1
	c.subs[i] = c.subs[last]
	c.subs[last] = nil
	c.subs = c.subs[:last]
	if len(c.subs) == 0 {
		c.subs = nil
	}
	return sub
}
