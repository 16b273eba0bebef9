package server

import (
	"context"
	"errors"
	"time"

	"github.com/huddle-rt/huddle/internal/hub"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
)

// maxRecoverBuffer bounds the live publications a subscribe buffers while it
// reads history; beyond it the subscribe fails with 4010.
const maxRecoverBuffer = 10000

// subscription is one connection's subscription to one stream. Until its
// subscribe completes it buffers live publications, so the reply, the
// recovered history and the live stream join with no gap or duplicate.
type subscription struct {
	c        *conn
	stream   string
	presence bool // wants presence diffs

	// Guarded by c.mu.
	buffering bool
	overflow  bool
	buf       []buffered // publications
	bufW      []buffered // whispers, conflated by key
	last      uint64     // offset of the last publication queued; later ones must exceed it
}

type buffered struct {
	offset uint64
	key    uint64
	frame  []byte
}

var _ hub.Subscriber = (*subscription)(nil)

func (s *subscription) Format() int { return int(s.c.codec) }

// Deliver queues a frame for the connection, or buffers it while the
// subscribe is still reading history.
func (s *subscription) Deliver(m hub.Message, frame []byte) {
	c := s.c
	offset := m.Offset
	if m.Kind == kindPresence && !s.presence {
		return
	}
	c.mu.Lock()
	if s.buffering {
		switch {
		case offset > 0 && len(s.buf) < maxRecoverBuffer:
			s.buf = append(s.buf, buffered{offset: offset, frame: frame})
		case offset > 0:
			s.overflow = true
		case m.Key != 0:
			s.bufferWhisperLocked(m.Key, frame)
		case len(s.bufW) < maxRecoverBuffer:
			s.bufW = append(s.bufW, buffered{frame: frame}) // a presence diff
		}
		c.mu.Unlock()
		return
	}
	if offset > 0 {
		// A publication stored before the subscribe read the stream's top
		// may reach the hub after the subscribe completed: it was already
		// accounted for (in subscribed.offset or .pubs), so drop it.
		if offset <= s.last {
			c.mu.Unlock()
			return
		}
		if offset != s.last+1 {
			c.srv.metrics.drops[dropLiveGap].Add(1)
		}
		s.last = offset
	}
	start := c.enqueueLocked(outItem{b: frame, key: m.Key})
	c.mu.Unlock()
	if start {
		c.kick()
	}
}

// bufferWhisperLocked keeps the newest whisper per key while subscribing.
// Lock c.mu must be held.
func (s *subscription) bufferWhisperLocked(key uint64, frame []byte) {
	for i := range s.bufW {
		if s.bufW[i].key == key && key != 0 {
			s.bufW[i].frame = frame
			return
		}
	}
	if len(s.bufW) < maxRecoverBuffer {
		s.bufW = append(s.bufW, buffered{key: key, frame: frame})
	}
}

// subscribe registers a buffering subscription; the error is a wire error
// to answer the sub with.
func (srv *Server) subscribe(c *conn, stream string, wantPresence bool) (*subscription, *protocol.Error) {
	sub := &subscription{c: c, stream: stream, presence: wantPresence, buffering: true}
	c.mu.Lock()
	if c.state != stateOpen || c.findSubLocked(stream) >= 0 {
		c.mu.Unlock()
		return nil, protocol.NewError(protocol.CodeBadRequest, "already subscribed")
	}
	if len(c.subs) >= srv.cfg.MaxSubscriptions {
		c.mu.Unlock()
		return nil, protocol.NewError(protocol.CodeRateLimited, "too many subscriptions on one connection (limit "+itoa(srv.cfg.MaxSubscriptions)+")")
	}
	c.subs = append(c.subs, sub)
	c.mu.Unlock()
	if srv.hub.Subscribe(stream, sub) {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		if err := srv.broker.Subscribe(ctx, stream); err != nil {
			srv.log.Warn("broker subscribe failed", "stream", stream, "err", err)
		}
		cancel()
	}
	srv.metrics.subscriptions.Add(1)
	return sub, nil
}

// unsubscribe removes sub from the hub (the caller removed it from its
// connection).
func (srv *Server) unsubscribe(sub *subscription) {
	if sub.c.clientID != "" {
		srv.whispers.Drop(sub.stream, sub.c.clientID)
	}
	if srv.hub.Unsubscribe(sub.stream, sub) {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		if err := srv.broker.Unsubscribe(ctx, sub.stream); err != nil {
			srv.log.Warn("broker unsubscribe failed", "stream", sub.stream, "err", err)
		}
		cancel()
	}
	srv.metrics.subscriptions.Add(-1)
}

// recover completes a subscribe: it reads the stream's position (and the
// missed publications when the client asked to recover), answers with
// subscribed, then releases the buffered live publications that follow,
// dropping duplicates. A gap it cannot fill fails the subscribe with 4010.
func (srv *Server) recover(sub *subscription, m *protocol.Subscribe) (ok bool) {
	c := sub.c
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()

	reply := &protocol.Subscribed{ID: m.ID, S: m.S}
	var history []storage.Publication
	var after uint64
	var err error
	if m.Recover != nil {
		var res storage.Result
		res, err = srv.history.Read(ctx, m.S, storage.Query{After: storage.Position{Epoch: m.Recover.Epoch, Offset: m.Recover.Offset}})
		recovered := err == nil && res.Complete && !res.More && m.Recover.Offset <= res.Top.Offset
		if errors.Is(err, storage.ErrEpochMismatch) {
			err = nil
		}
		reply.Epoch, reply.Offset = res.Top.Epoch, res.Top.Offset
		reply.Recovered = &recovered
		if recovered {
			history, after = res.Pubs, m.Recover.Offset
			reply.Pubs = wirePubs(m.S, res.Top.Epoch, history)
		} else {
			after = res.Top.Offset
		}
	} else {
		var top storage.Position
		top, err = srv.history.Top(ctx, m.S)
		reply.Epoch, reply.Offset, after = top.Epoch, top.Offset, top.Offset
	}
	if err != nil {
		srv.dropSubscription(sub)
		c.sendError(m.ID, m.S, protocol.CodeInternal, "subscribe failed: "+err.Error())
		return false
	}
	reply.LV = srv.whispers.Snapshot(m.S, c.clientID)
	if sub.presence {
		members, err := srv.presence.Members(ctx, m.S)
		if err != nil {
			srv.dropSubscription(sub)
			c.sendError(m.ID, m.S, protocol.CodeInternal, "subscribe failed: "+err.Error())
			return false
		}
		reply.Members = members // omitted when empty: nobody is here
	}
	frame, err := protocol.AppendMessage(c.codec, nil, reply)
	if err != nil {
		srv.dropSubscription(sub)
		c.sendError(m.ID, m.S, protocol.CodeInternal, "subscribe failed: "+err.Error())
		return false
	}

	c.mu.Lock()
	live := make([]uint64, len(sub.buf))
	for i, b := range sub.buf {
		live[i] = b.offset
	}
	start, gapErr := storage.Merge(after, history, live)
	if sub.overflow {
		gapErr = errors.New("too many publications arrived during the subscribe")
	}
	if gapErr != nil {
		sub.buf = nil
		c.mu.Unlock()
		srv.dropSubscription(sub)
		srv.metrics.drops[dropRecoveryGap].Add(1)
		c.sendError(m.ID, m.S, protocol.CodeInsufficientState, "could not guarantee order: "+gapErr.Error())
		return false
	}
	kick := c.enqueueLocked(outItem{b: frame})
	sub.last = after
	if len(history) > 0 {
		sub.last = history[len(history)-1].Offset
	}
	for _, b := range sub.buf[start:] {
		kick = c.enqueueLocked(outItem{b: b.frame}) || kick
		sub.last = b.offset
	}
	for _, b := range sub.bufW {
		kick = c.enqueueLocked(outItem{b: b.frame, key: b.key}) || kick
	}
	sub.buf, sub.bufW, sub.buffering = nil, nil, false
	c.mu.Unlock()
	srv.metrics.countOut(protocol.TypeSubscribed, 1)
	if kick {
		c.kick()
	}
	return true
}

// dropSubscription undoes subscribe after a failure.
func (srv *Server) dropSubscription(sub *subscription) {
	c := sub.c
	c.mu.Lock()
	i := c.findSubLocked(sub.stream)
	owned := i >= 0 && c.subs[i] == sub
	if owned {
		c.takeSubLocked(sub.stream)
	}
	c.mu.Unlock()
	if owned {
		srv.unsubscribe(sub)
	}
}

// publish stores and delivers a publication, with the stream's history
// bounds from the rules.
func (srv *Server) publish(ctx context.Context, stream string, pub storage.Publication) (storage.Publication, storage.Position, error) {
	opts := srv.auth.StreamOptions(stream)
	return srv.broker.Publish(ctx, stream, pub, storage.Options{Size: opts.HistorySize, TTL: opts.HistoryTTL})
}

// HandlePublication delivers a stored publication to this node's
// subscribers, encoding it once per wire format in use.
func (srv *Server) HandlePublication(stream, epoch string, pub storage.Publication) {
	start := time.Now()
	frames := hub.NewFrames(func(format int) []byte {
		w := wirePub(stream, epoch, &pub)
		b, err := protocol.AppendMessage(protocol.Codec(format), nil, &w)
		if err != nil {
			srv.log.Error("encode publication failed", "stream", stream, "err", err)
		}
		return b
	})
	n := srv.hub.Broadcast(stream, hub.Message{Offset: pub.Offset}, frames, nil)
	srv.metrics.countOut(protocol.TypePub, n)
	srv.metrics.observePublish(time.Since(start))
}

// findSubLocked returns the index of the subscription to stream, or -1.
// Lock c.mu must be held.
func (c *conn) findSubLocked(stream string) int {
	for i, s := range c.subs {
		if s.stream == stream {
			return i
		}
	}
	return -1
}

// takeSubLocked removes and returns the subscription to stream, or nil.
// Lock c.mu must be held.
func (c *conn) takeSubLocked(stream string) *subscription {
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
