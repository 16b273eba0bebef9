package server

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"

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

// handle decodes one WebSocket message and runs every protocol message in
// it, in order.
func (c *conn) handle(payload []byte) {
	var arr [4]protocol.Decoded
	msgs, err := protocol.DecodeClient(c.codec, payload, arr[:0])
	if err != nil {
		if c.ident.Load() == nil {
			c.closeWith(protocol.CodeUnauthorized, "the first message must be connect", false)
			return
		}
		c.closeWith(protocol.CodeBadRequest, err.Error(), false)
		return
	}
	now := time.Now().UnixNano()
	for _, d := range msgs {
		if !c.tc.Accepting() {
			return
		}
		if ok, warn := c.msgLimiter.Allow(now, &c.srv.msgLimit); !ok {
			c.flooded++
			if int(c.flooded) > 10*c.srv.cfg.MessageBurst {
				c.closeWith(protocol.CodeRateLimited, "message flood", true)
				return
			}
			if warn {
				c.sendError(0, "", protocol.CodeRateLimited, "over "+strconv.Itoa(int(c.srv.cfg.MessageRate))+" messages a second: excess messages are dropped")
			}
			continue
		}
		if d.Err != nil {
			c.srv.metrics.countIn("invalid")
			if c.ident.Load() == nil {
				c.closeWith(protocol.CodeUnauthorized, "the first message must be a valid connect: "+d.Err.Reason, false)
				return
			}
			c.sendError(d.Err.ID, "", protocol.CodeBadRequest, d.Err.Error())
			continue
		}
		c.srv.metrics.countIn(d.Msg.Type())
		c.dispatch(d.Msg)
	}
}

func (c *conn) dispatch(m protocol.Message) {
	id := c.ident.Load()
	if id == nil {
		if cm, ok := m.(*protocol.Connect); ok {
			c.onConnect(cm)
			return
		}
		c.closeWith(protocol.CodeUnauthorized, "the first message must be connect", false)
		return
	}
	switch m := m.(type) {
	case *protocol.Connect:
		c.sendError(m.ID, "", protocol.CodeBadRequest, "already connected")
	case *protocol.Subscribe:
		c.onSubscribe(id, m)
	case *protocol.Unsubscribe:
		c.onUnsubscribe(m)
	case *protocol.Publish:
		c.onPublish(id, m)
	case *protocol.HistoryRequest:
		c.onHistory(id, m)
	case *protocol.Refresh:
		c.onRefresh(id, m)
	case *protocol.Ping:
		c.send(&protocol.Pong{})
	case *protocol.Pong:
	case *protocol.SendWhisper:
		c.onWhisper(id, m)
	case *protocol.Join:
		c.onJoin(id, m)
	case *protocol.Update:
		c.onUpdate(id, m)
	case *protocol.Leave:
		c.onLeave(m)
	case *protocol.WhoRequest:
		c.onWho(id, m)
	case *protocol.Unknown:
		c.sendError(m.ID, "", protocol.CodeBadRequest, "unknown message type "+quote(m.T))
	}
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return `"` + s + `"`
}

func (c *conn) onConnect(m *protocol.Connect) {
	token := m.Token
	if token == "" {
		if c.rare != nil {
			token = c.rare.upgradeToken
		}
	}
	id, err := c.srv.auth.Verify(token)
	if err != nil {
		if errors.Is(err, auth.ErrExpired) {
			c.closeWith(protocol.CodeTokenExpired, "token expired", true)
			return
		}
		c.closeWith(protocol.CodeUnauthorized, err.Error(), false)
		return
	}
	c.clientID = uuid.NewString()
	c.ident.Store(id)
	c.rare = nil // only the upgrade token was in use before connect
	c.firstPing()
	c.srv.metrics.connected.Add(1)
	reply := &protocol.Connected{
		ID:     m.ID,
		Client: c.clientID,
		User:   id.User,
		Ping:   int(c.srv.cfg.PingInterval / time.Second),
		Node:   c.srv.cfg.Node,
	}
	if !id.Expires.IsZero() {
		reply.Exp = id.Expires.Unix()
	}
	c.send(reply)
}

// streamCheck validates a stream name and the op on it, answering the
// request with an error when either fails.
func (c *conn) streamCheck(id *auth.Identity, reqID uint64, stream string, op auth.Op) bool {
	if !auth.ValidStream(stream) {
		c.sendError(reqID, stream, protocol.CodeBadRequest, "invalid stream name (1-256 bytes of UTF-8, no control characters)")
		return false
	}
	if !c.srv.auth.Allowed(id, op, stream) {
		c.sendError(reqID, stream, protocol.CodeForbidden, "op "+op.String()+" is not allowed on this stream")
		return false
	}
	return true
}

func (c *conn) onSubscribe(id *auth.Identity, m *protocol.Subscribe) {
	if !c.streamCheck(id, m.ID, m.S, auth.OpSub) {
		return
	}
	if m.Presence && !c.srv.auth.StreamOptions(m.S).Presence {
		c.sendError(m.ID, m.S, protocol.CodeForbidden, "presence is off on this stream")
		return
	}
	if len(m.Join) > 0 && (!c.streamCheck(id, m.ID, m.S, auth.OpPresence) || !c.checkState(m.ID, m.S, m.Join)) {
		return
	}
	sub, werr := c.srv.reserve(c, m.S, m.Presence)
	if werr != nil {
		c.sendError(m.ID, m.S, werr.Code, werr.Reason)
		return
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

func (c *conn) onUnsubscribe(m *protocol.Unsubscribe) {
	c.settleJoin(m.S, false)
	c.tc.Lock()
	sub := c.takeSubLocked(m.S)
	c.tc.Unlock()
	if sub != nil {
		c.dropSubscribeJob(sub)
		c.srv.unsubscribe(sub)
	}
	c.leave(m.S)
	if m.ID != 0 {
		c.send(&protocol.Unsubscribed{ID: m.ID, S: m.S})
	}
}

func (c *conn) onPublish(id *auth.Identity, m *protocol.Publish) {
	if !c.streamCheck(id, m.ID, m.S, auth.OpPub) {
		return
	}
	data := m.Data
	if len(data) == 0 {
		data = protocol.RawNil
	}
	if err := c.srv.deliverable(m.S, id.User, c.clientID, data); err != nil {
		c.sendError(m.ID, m.S, protocol.CodeTooLarge, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	pub, pos, err := c.srv.publish(ctx, m.S, storage.Publication{Data: data, User: id.User, Client: c.clientID})
	if err != nil {
		c.sendError(m.ID, m.S, protocol.CodeInternal, "publish failed: "+err.Error())
		return
	}
	c.send(&protocol.Ack{ID: m.ID, S: m.S, Offset: pub.Offset, Epoch: pos.Epoch})
}

func (c *conn) onHistory(id *auth.Identity, m *protocol.HistoryRequest) {
	if !c.streamCheck(id, m.ID, m.S, auth.OpHistory) {
		return
	}
	if !c.addJob(historyJob{m: m}, true) {
		c.sendError(m.ID, m.S, protocol.CodeRateLimited, "too many history and who requests waiting for the connection to read its replies (limit "+strconv.Itoa(maxWaitingRequests)+")")
	}
}

func (c *conn) onRefresh(id *auth.Identity, m *protocol.Refresh) {
	nid, err := c.srv.auth.Refresh(id, m.Token)
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
func (c *conn) revoke(id *auth.Identity) {
	a := c.srv.auth
	var subs []*subscription
	c.tc.Lock()
	for i := 0; i < len(c.subs); {
		if sub := c.subs[i]; !a.Allowed(id, auth.OpSub, sub.stream) {
			c.takeSubLocked(sub.stream)
			subs = append(subs, sub)
			continue
		}
		i++
	}
	var unjoin []string
	for _, stream := range c.joined {
		if !a.Allowed(id, auth.OpPresence, stream) && !containsSub(subs, stream) {
			unjoin = append(unjoin, stream)
		}
	}
	c.tc.Unlock()
	const why = "no longer granted by the refreshed token"
	for _, sub := range subs {
		waiting := c.dropSubscribeJob(sub)
		c.srv.unsubscribe(sub)
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

func wirePubs(stream, epoch string, pubs []storage.Publication) []protocol.Pub {
	out := make([]protocol.Pub, len(pubs))
	for i := range pubs {
		out[i] = wirePub(stream, epoch, &pubs[i])
	}
	return out
}

// onWhisper relays an ephemeral event to the stream's other subscribers:
// on this node at once, encoded once per wire format, and through the
// broker to the other nodes; never stored, never echoed.
func (c *conn) onWhisper(id *auth.Identity, m *protocol.SendWhisper) {
	cfg := &c.srv.cfg.Whisper
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
		c.srv.metrics.drops[dropWhisperRate].Add(1)
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
		if !c.srv.whispers.Put(w) {
			c.srv.metrics.drops[dropWhisperCacheFull].Add(1)
		}
	}
	c.tc.Unlock()
	var skip hub.Subscriber
	if self != nil {
		skip = self
	}
	c.srv.fanOutWhisper(&w, skip)
}

// fanOutWhisper delivers w to the stream's subscribers on this node except
// skip, encoded once per wire format and conflated per (stream, sender, ev)
// for slow receivers, and through the broker to the other nodes.
func (srv *Server) fanOutWhisper(w *protocol.Whisper, skip hub.Subscriber) {
	frames := hub.NewFrames(func(format int) []byte {
		b, err := protocol.AppendMessage(protocol.Codec(format), nil, w)
		if err != nil {
			srv.log.Error("encode whisper failed", "err", err)
		}
		return b
	})
	n := srv.hub.Broadcast(w.S, hub.Message{Key: whisper.Key(w.S, w.From.Client, w.Ev)}, frames, skip)
	srv.metrics.countOut(protocol.TypeWhisper, n)
	srv.relay(w.S, frames, false)
}
