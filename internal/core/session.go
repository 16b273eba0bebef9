package core

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/hub"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
	"github.com/huddle-rt/huddle/whisper"
)

// Bounds of a history request.
const (
	defaultHistoryLimit = 100
	maxHistoryLimit     = 1000
	requestTimeout      = 5 * time.Second
)

// streamCheck validates a stream name and the op on it, answering the
// request with an error when either fails.
func (c *Session) streamCheck(id *auth.Identity, reqID uint64, stream string, op auth.Op) bool {
	if !auth.ValidStream(stream) {
		c.sendError(reqID, stream, protocol.CodeBadRequest, "invalid stream name (1-256 bytes of UTF-8, no control characters)")
		return false
	}
	if !c.allowed(id, op, stream) {
		c.sendError(reqID, stream, protocol.CodeForbidden, "op "+op.String()+" is not allowed on this stream")
		return false
	}
	return true
}

// Subscribe subscribes the session to m.S; the reply (subscribed or an
// error) comes as a job (see jobs.go).
func (c *Session) Subscribe(m *protocol.Subscribe) { c.SubscribeWrapped(m, nil) }

// SubscribeWrapped is Subscribe for a protocol whose frames need w (see
// Wrapper); nil is Subscribe.
func (c *Session) SubscribeWrapped(m *protocol.Subscribe, w *Wrapper) { c.SubscribeSince(m, w, 0) }

// SubscribeSince is SubscribeWrapped for a subscribe that, without a
// position to recover from (m.Recover nil), asks for the publications
// stored since a time (unix milliseconds; 0: none): they are recovered as
// from a position, and recovered is false when history no longer reaches
// back that far.
func (c *Session) SubscribeSince(m *protocol.Subscribe, w *Wrapper, since int64) {
	id := c.ident.Load()
	if !c.streamCheck(id, m.ID, m.S, auth.OpSub) {
		return
	}
	if m.Presence && !c.node.auth.StreamOptions(m.S).Presence {
		c.sendError(m.ID, m.S, protocol.CodeForbidden, "presence is off on this stream")
		return
	}
	if len(m.Join) > 0 && (!c.streamCheck(id, m.ID, m.S, auth.OpPresence) || !c.checkState(m.ID, m.S, m.Join)) {
		return
	}
	sub, werr := c.node.reserve(c, m.S, m.Presence, w)
	if werr != nil {
		c.sendError(m.ID, m.S, werr.Code, werr.Reason)
		return
	}
	if m.Recover == nil && since > 0 {
		sub.pend.since = since
	}
	j := &subscribeJob{sub: sub, m: m}
	if len(m.Join) > 0 {
		j.join = m.Join
	}
	if !c.addJob(j, false) {
		c.tc.Lock()
		c.takeSubLocked(m.S)
		c.tc.Unlock()
		c.sendError(m.ID, m.S, protocol.CodeRateLimited, "too many requests waiting for the connection to read its replies")
	}
}

func (c *Session) Unsubscribe(m *protocol.Unsubscribe) {
	c.settleJoin(m.S, false)
	c.tc.Lock()
	sub := c.takeSubLocked(m.S)
	c.tc.Unlock()
	if sub != nil {
		c.dropSubscribeJob(sub)
		c.node.unsubscribe(sub)
	}
	c.leave(m.S)
	if m.ID != 0 {
		c.send(&protocol.Unsubscribed{ID: m.ID, S: m.S})
	}
}

// Rewrap makes w the Wrapper of the subscription to stream, for the
// publications delivered from now on (a front-end whose clients follow one
// stream under several names gives it a Wrapper that names them all). It
// reports false when there is no such subscription.
func (c *Session) Rewrap(stream string, w *Wrapper) bool {
	c.tc.Lock()
	defer c.tc.Unlock()
	i := c.findSubLocked(stream)
	if i < 0 {
		return false
	}
	c.subs[i].wrap.Store(w)
	return true
}

func (c *Session) Publish(m *protocol.Publish) {
	id := c.ident.Load()
	if !c.streamCheck(id, m.ID, m.S, auth.OpPub) {
		return
	}
	data := m.Data
	if len(data) == 0 {
		data = protocol.RawNil
	}
	if err := c.node.deliverable(m.S, id.User, c.clientID, data); err != nil {
		c.sendError(m.ID, m.S, protocol.CodeTooLarge, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	pub, pos, err := c.node.publish(ctx, m.S, storage.Publication{Data: data, User: id.User, Client: c.clientID})
	if err != nil {
		if errors.Is(err, storage.ErrDocumentFull) {
			c.sendError(m.ID, m.S, protocol.CodeTooLarge, "publish refused: the document is at its size cap; send a snapshot (compact) to make room")
			return
		}
		c.sendError(m.ID, m.S, protocol.CodeInternal, "publish failed: "+err.Error())
		return
	}
	ack := &protocol.Ack{ID: m.ID, S: m.S, Offset: pub.Offset, Epoch: pos.Epoch}
	if pub.Offset%uint64(c.node.compactEvery()) == 0 && c.node.auth.StreamOptions(m.S).Document {
		ack.Compact = true
	}
	c.send(ack)
}

// Compact stores a client's snapshot of a document stream (see
// protocol.Compact). It needs the pub op on the stream.
func (c *Session) Compact(m *protocol.Compact) {
	id := c.ident.Load()
	if !c.streamCheck(id, m.ID, m.S, auth.OpPub) {
		return
	}
	if !c.node.auth.StreamOptions(m.S).Document {
		c.sendError(m.ID, m.S, protocol.CodeBadRequest, "compact: "+m.S+" is not a document stream (a rule with document=on makes it one)")
		return
	}
	comp, ok := c.node.history.(storage.Compactor)
	if !ok {
		c.sendError(m.ID, m.S, protocol.CodeInternal, "compact: this server's storage keeps no documents")
		return
	}
	if len(m.Data) == 0 || m.Offset == 0 || m.Epoch == "" {
		c.sendError(m.ID, m.S, protocol.CodeBadRequest, "compact needs epoch, an offset above 0 and data")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	_, err := comp.Compact(ctx, m.S, storage.Position{Epoch: m.Epoch, Offset: m.Offset}, m.Data, storage.Options{Document: true})
	switch {
	case errors.Is(err, storage.ErrEpochMismatch):
		c.sendError(m.ID, m.S, protocol.CodeInsufficientState, "compact: the document's epoch is not "+m.Epoch+" any more")
	case errors.Is(err, storage.ErrSnapshotAhead):
		c.sendError(m.ID, m.S, protocol.CodeBadRequest, "compact: offset "+strconv.FormatUint(m.Offset, 10)+" is past the document's top")
	case err != nil:
		c.sendError(m.ID, m.S, protocol.CodeInternal, "compact failed: "+err.Error())
	default:
		c.node.metrics.Compactions.Add(1)
		c.send(&protocol.Ack{ID: m.ID, S: m.S, Offset: m.Offset, Epoch: m.Epoch})
	}
}

func (c *Session) History(m *protocol.HistoryRequest) {
	id := c.ident.Load()
	if !c.streamCheck(id, m.ID, m.S, auth.OpHistory) {
		return
	}
	if !c.addJob(historyJob{m: m}, true) {
		c.sendError(m.ID, m.S, protocol.CodeRateLimited, "too many history and who requests waiting for the connection to read its replies (limit "+strconv.Itoa(maxWaitingRequests)+")")
	}
}

func (c *Session) Refresh(m *protocol.Refresh) {
	id := c.ident.Load()
	nid, err := c.node.auth.Refresh(id, m.Token)
	if err != nil {
		code := protocol.CodeUnauthorized
		if errors.Is(err, auth.ErrExpired) {
			code = protocol.CodeTokenExpired
		}
		c.sendError(m.ID, "", code, err.Error())
		return
	}
	c.ident.Store(nid)
	reply := &protocol.Refreshed{ID: m.ID}
	if !nid.Expires.IsZero() {
		reply.Exp = nid.Expires.Unix()
	}
	c.send(reply)
	c.revoke(nid)
}

// revoke ends what the connection's identity no longer grants after a
// refresh: a subscription without op sub ends with unsubscribed 4003 (and
// its presence with it); a presence join without op presence leaves, told
// by unsubscribed 4003 when the connection is not subscribed to the stream
// and by error 4003 when it stays subscribed.
func (c *Session) revoke(id *auth.Identity) {
	var subs []*subscription
	c.tc.Lock()
	for i := 0; i < len(c.subs); {
		if sub := c.subs[i]; !c.allowed(id, auth.OpSub, sub.stream) {
			c.takeSubLocked(sub.stream)
			subs = append(subs, sub)
			continue
		}
		i++
	}
	var unjoin []string
	for _, stream := range c.joined {
		if !c.allowed(id, auth.OpPresence, stream) && !containsSub(subs, stream) {
			unjoin = append(unjoin, stream)
		}
	}
	c.tc.Unlock()
	const why = "no longer granted by the refreshed token"
	for _, sub := range subs {
		waiting := c.dropSubscribeJob(sub)
		c.node.unsubscribe(sub)
		c.leave(sub.stream)
		if waiting != nil {
			// Not subscribed yet: the sub itself is answered.
			c.sendError(waiting.ID, sub.stream, protocol.CodeForbidden, "op sub "+why)
			continue
		}
		c.send(&protocol.Unsubscribed{S: sub.stream, Code: protocol.CodeForbidden, Reason: "op sub " + why})
	}
	for _, stream := range unjoin {
		c.leave(stream)
		c.tc.Lock()
		subscribed := c.findSubLocked(stream) >= 0
		c.tc.Unlock()
		if subscribed {
			c.sendError(0, stream, protocol.CodeForbidden, "op presence "+why+": left the stream's presence")
		} else {
			c.send(&protocol.Unsubscribed{S: stream, Code: protocol.CodeForbidden, Reason: "op presence " + why})
		}
	}
}

func containsSub(subs []*subscription, stream string) bool {
	for _, s := range subs {
		if s.stream == stream {
			return true
		}
	}
	return false
}

// wirePub turns a stored publication into its wire message.
func wirePub(stream, epoch string, p *storage.Publication) protocol.Pub {
	w := protocol.Pub{S: stream, Offset: p.Offset, Epoch: epoch, Data: p.Data, TS: p.Time}
	if p.User != "" || p.Client != "" {
		w.From = &protocol.ClientInfo{User: p.User, Client: p.Client}
	}
	return w
}

// snapFlag is the value of protocol.Pub.Snap on a snapshot.
var snapFlag = func() *bool { t := true; return &t }()

// WirePubs turns stored publications into their wire messages; snap says
// that pubs[0] is a document's snapshot (storage.Result.Snapshot).
func WirePubs(stream, epoch string, pubs []storage.Publication, snap bool) []protocol.Pub {
	out := make([]protocol.Pub, len(pubs))
	for i := range pubs {
		out[i] = wirePub(stream, epoch, &pubs[i])
	}
	if snap && len(out) > 0 {
		out[0].Snap = snapFlag
	}
	return out
}

// onWhisper relays an ephemeral event to the stream's other subscribers:
// on this node at once, encoded once per wire format, and through the
// broker to the other nodes; never stored, never echoed.
func (c *Session) Whisper(m *protocol.SendWhisper) {
	id := c.ident.Load()
	cfg := &c.node.cfg.Whisper
	if !c.streamCheck(id, 0, m.S, auth.OpWhisper) {
		return
	}
	if m.Ev == "" || len(m.Ev) > protocol.MaxEventName {
		c.sendError(0, m.S, protocol.CodeBadRequest, "whisper ev must be 1-64 bytes")
		return
	}
	if len(m.Data) > cfg.MaxData {
		c.sendError(0, m.S, protocol.CodeTooLarge, "whisper data over the limit of "+strconv.Itoa(cfg.MaxData)+" bytes")
		return
	}
	if ok, warn := c.r().whispers.Allow(time.Now().UnixNano(), cfg); !ok {
		c.node.metrics.Drops[DropWhisperRate].Add(1)
		if warn {
			c.sendError(0, m.S, protocol.CodeRateLimited, "whisper rate limit ("+strconv.Itoa(int(cfg.Rate))+"/s, burst "+strconv.Itoa(cfg.Burst)+"): excess whispers are dropped")
		}
		return
	}
	data := m.Data
	if len(data) == 0 {
		data = protocol.RawNil
	}
	w := protocol.Whisper{S: m.S, Ev: m.Ev, Data: data, From: protocol.ClientInfo{User: id.User, Client: c.clientID}}
	c.tc.Lock()
	var self *subscription
	if i := c.findSubLocked(m.S); i >= 0 {
		self = c.subs[i]
		// Only a subscribed sender's whispers are cached, and the entry
		// lives as long as the subscription: putting it under c.mu means a
		// concurrent destroy either has not taken the subscription yet (and
		// its Drop comes after) or has (and there is no Put).
		if !c.node.whispers.Put(w) {
			c.node.metrics.Drops[DropWhisperCacheFull].Add(1)
		}
	}
	c.tc.Unlock()
	var skip hub.Subscriber
	if self != nil {
		skip = self
	}
	c.node.fanOutWhisper(&w, skip)
}

// fanOutWhisper delivers w to the stream's subscribers on this node except
// skip, encoded once per wire format and conflated per (stream, sender, ev)
// for slow receivers, and through the broker to the other nodes.
func (node *Node) fanOutWhisper(w *protocol.Whisper, skip hub.Subscriber) {
	frames := node.frames(w)
	n := node.hub.Broadcast(w.S, hub.Message{Key: whisper.Key(w.S, w.From.Client, w.Ev)}, frames, skip)
	node.metrics.CountOut(protocol.TypeWhisper, n)
	node.relay(w.S, frames, w, false)
}

// quote quotes s for an error reason, cut to 64 bytes.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return `"` + s + `"`
}
