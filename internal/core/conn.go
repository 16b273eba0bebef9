package core

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/transport"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/whisper"
)

// maxPreConnectMessage bounds a message before connect succeeded (a
// connect with a large token is a few KiB).
const maxPreConnectMessage = 64 << 10

// Session is the protocol-agnostic state of one connection: its identity,
// subscriptions, presence joins and reply jobs. A front-end embeds it in its
// connection type and implements the rest of transport.Session (OnMessage,
// Goodbye, Check). The state marked "guarded by tc" is under the transport
// connection's lock, which is also its queue's, so a delivery takes one
// lock.
type Session struct {
	tc   *transport.Conn
	node *Node
	out  Output

	// Owned by whichever goroutine runs the connection's work (at most
	// one at a time).
	flooded int32 // messages dropped by msgLimiter
	// fmtEv packs the index of the node Format the connection receives
	// (the low byte, set by Init), its user's Events state (userEv*
	// shifted by 8, any goroutine) and the ping interval the client asked
	// for (seconds, the high 16 bits; 0: the node's): one word, next to
	// flooded, keeps Session in its size class.
	fmtEv      atomic.Uint32
	rare       *connRare // state few connections need, allocated on first use
	msgLimiter whisper.Limiter

	ident    atomic.Pointer[auth.Identity] // nil until connect succeeds
	clientID string                        // set with ident
	lastPing atomic.Int64

	// Guarded by tc.
	subs   []*subscription // few per connection: a slice beats a map
	joined []string        // streams whose presence this connection is in
	jobs   *jobQueue       // replies waiting for room in the queue (see pump); nil when none
}

// Events states of a Session's user (in fmtEv).
const (
	userEvConnected = 1 + iota
	userEvClosed
)

// connRare holds worker-owned state that most connections never use, so an
// idle connection does not carry it.
type connRare struct {
	upgradeToken string          // token from the upgrade request, until connect
	whispers     whisper.Limiter // whisper rate
	updates      whisper.Limiter // presence update rate
}

// Init binds a session to its connection, its node, its replies' encoder
// and the Format (an AddFormat index) it receives. A front-end calls it on
// the Session it embeds, in transport.Handler.Upgrade.
func (c *Session) Init(tc *transport.Conn, node *Node, out Output, format int) {
	c.tc, c.node, c.out = tc, node, out
	c.fmtEv.Store(uint32(uint8(format)))
}

// Conn returns the session's transport connection.
func (c *Session) Conn() *transport.Conn { return c.tc }

// Node returns the session's node.
func (c *Session) Node() *Node { return c.node }

// Ident returns the session's identity, nil before Connect.
func (c *Session) Ident() *auth.Identity { return c.ident.Load() }

// ClientID returns the id Connect gave the session.
func (c *Session) ClientID() string { return c.clientID }

// SetUpgradeToken keeps a token from the upgrade request for Connect.
func (c *Session) SetUpgradeToken(token string) {
	if token != "" {
		c.r().upgradeToken = token
	}
}

// UpgradeToken returns the token kept by SetUpgradeToken, until Connect.
func (c *Session) UpgradeToken() string {
	if c.rare == nil {
		return ""
	}
	return c.rare.upgradeToken
}

// r returns the connection's rare state, allocating it on first use. Only
// the goroutine running the connection's work may call it.
func (c *Session) r() *connRare {
	if c.rare == nil {
		c.rare = new(connRare)
	}
	return c.rare
}

// Connect makes id the session's identity and gives it a client id.
func (c *Session) Connect(id *auth.Identity) { c.ConnectAs(id, uuid.NewString()) }

// ConnectAs is Connect with a client id the front-end chose: one it had to
// name before the identity was known (the session id an application backend
// is told with the connect call it answers).
func (c *Session) ConnectAs(id *auth.Identity, clientID string) {
	c.clientID = clientID
	c.ident.Store(id)
	c.rare = nil // only the upgrade token was in use before connect
	// The first ping comes at a random point of the last quarter of the
	// first interval (see PingDue).
	c.lastPing.Store(time.Now().UnixNano() - rand.Int64N(int64(c.pingJitter())+1))
	c.node.metrics.Connected.Add(1)
	// Closed may run at the same time (a sweep, a drain): the one that
	// moves userEv first decides, so a user is never connected after its
	// connection closed.
	if id.User != "" && c.node.events != nil && c.setUserEv(userEvConnected) == 0 {
		c.node.events.OnUserConnected(id.User)
	}
	if c.node.log.Enabled(context.Background(), slog.LevelDebug) {
		c.node.log.Debug("connected", "client", clientID, "user", id.User, "addr", c.tc.RemoteIP())
	}
}

// pingJitter is the spread of first pings: a quarter of an interval.
// Connections that arrive together (a restart, a reconnect storm) would
// otherwise be pinged in the same sweep every interval, and their pongs
// read together, a burst of 2N syscalls that stalls the rest of the node
// (about 150 ms every 25 s at 10,000 connections). A ping never comes later
// than one interval.
func (c *Session) pingJitter() time.Duration { return c.PingInterval() / 4 }

// PingInterval is the connection's ping interval: the one its client
// asked for, else the node's.
func (c *Session) PingInterval() time.Duration {
	if s := c.fmtEv.Load() >> 16; s > 0 {
		return time.Duration(s) * time.Second
	}
	return c.node.cfg.PingInterval
}

// SetPingInterval gives the connection a ping interval of its own (whole
// seconds, at most 65535); the caller bounds it.
func (c *Session) SetPingInterval(d time.Duration) {
	s := uint32(min(max(d/time.Second, 1), 0xffff))
	for {
		old := c.fmtEv.Load()
		if c.fmtEv.CompareAndSwap(old, old&0xffff|s<<16) {
			return
		}
	}
}

// PingDue reports whether a ping is due at now, every interval (0: the
// node's), and if so counts it as sent.
func (c *Session) PingDue(now time.Time, interval time.Duration) bool {
	if interval <= 0 {
		interval = c.PingInterval()
	}
	if now.Sub(time.Unix(0, c.lastPing.Load())) < interval {
		return false
	}
	c.lastPing.Store(now.UnixNano())
	return true
}

// Admit applies the message rate limit to one inbound message at now: false
// drops it. A connection that keeps flooding (over ten bursts dropped) is
// closed with 4006; flood reports it.
func (c *Session) Admit(now int64) (ok, warn, flood bool) {
	ok, warn = c.msgLimiter.Allow(now, &c.node.msgLimit)
	if ok {
		return true, false, false
	}
	c.flooded++
	return false, warn, int(c.flooded) > 10*c.node.cfg.MessageBurst
}

// MaxMessage implements transport.Session: before connect, a message need
// only carry a token, so a client that has not authenticated may not make
// the server hold a megabyte.
func (c *Session) MaxMessage() int {
	if c.ident.Load() == nil {
		return min(c.node.cfg.MaxMessage, maxPreConnectMessage)
	}
	return c.node.cfg.MaxMessage
}

// WaitingLocked implements transport.Session: reply jobs wait for room.
func (c *Session) WaitingLocked() bool { return c.jobs != nil && !c.jobs.busy }

// Room implements transport.Session.
func (c *Session) Room() { c.pump() }

// Closed implements transport.Session: presence ends (at once for a peer
// that sent a close frame or was told not to reconnect, after the grace
// for any other end: a dropped socket, a drain, a slow consumer), and the
// subscriptions go.
func (c *Session) Closed(clean bool) {
	c.tc.Lock()
	subs := c.subs
	c.subs = nil
	c.jobs = nil
	c.tc.Unlock()
	node := c.node
	c.leaveAll(!clean)
	for _, sub := range subs {
		node.unsubscribe(sub)
	}
	told := c.setUserEv(userEvClosed) == userEvConnected
	if id := c.ident.Load(); id != nil {
		node.metrics.Connected.Add(-1)
		if told {
			node.events.OnUserDisconnected(id.User)
		}
		if node.log.Enabled(context.Background(), slog.LevelDebug) {
			node.log.Debug("closed", "client", c.clientID, "user", id.User, "clean", clean, "subscriptions", len(subs))
		}
	}
}

// textual reports whether the session's format is text.
func (c *Session) textual() bool {
	return c.Format() < len(c.node.formats) && c.node.formats[c.Format()].Textual
}

// encode encodes a reply with the session's Output.
func (c *Session) encode(m protocol.Message) ([]byte, error) { return c.out.Encode(m) }

// enqueueLocked queues an encoded message (see transport.Conn.EnqueueLocked);
// an empty one (a message the protocol does not have) is not sent.
func (c *Session) enqueueLocked(b []byte, key uint64) bool {
	if len(b) == 0 {
		return false
	}
	return c.tc.EnqueueLocked(b, key)
}

// Send encodes m and queues it.
func (c *Session) Send(m protocol.Message) {
	b, err := c.encode(m)
	if err != nil {
		c.node.log.Error("encode failed", "type", m.Type(), "err", err)
		return
	}
	c.sendEncoded(m.Type(), b)
}

func (c *Session) send(m protocol.Message) { c.Send(m) }

// sendEncoded queues b, a message of type typ already encoded.
func (c *Session) sendEncoded(typ string, b []byte) {
	if len(b) == 0 {
		return
	}
	c.node.metrics.CountOut(typ, 1)
	c.tc.Send(b)
}

// SendError answers a request with an error reply.
func (c *Session) SendError(id uint64, stream string, code protocol.Code, reason string) {
	c.send(&protocol.ErrorReply{ID: id, S: stream, Code: code, Reason: reason, Retry: code.Reconnect()})
}

func (c *Session) sendError(id uint64, stream string, code protocol.Code, reason string) {
	c.SendError(id, stream, code, reason)
}

// DisconnectMsg encodes a disconnect and counts it.
func (c *Session) DisconnectMsg(code protocol.Code, reason string, reconnect bool) []byte {
	msg, _ := c.encode(&protocol.Disconnect{Code: code, Reason: reason, Reconnect: reconnect})
	c.node.metrics.CountOut(protocol.TypeDisconnect, 1)
	c.node.metrics.CountDisconnect(code)
	return msg
}

// Goodbye implements transport.Session with the disconnect of the code that
// matches r.
func (c *Session) Goodbye(r transport.Reason, detail string) (uint16, []byte, bool) {
	code, reconnect := protocol.CodeBadRequest, false
	switch r {
	case transport.TooLarge:
		code = protocol.CodeTooLarge
	case transport.SlowConsumer:
		code, reconnect = protocol.CodeSlowConsumer, true
		c.node.metrics.Drops[DropSlowConsumer].Add(1)
	}
	return uint16(code), c.DisconnectMsg(code, detail, reconnect), reconnect
}

// CloseWith sends disconnect with code and a close frame, then closes the
// socket once they are flushed (or after transport.CloseGrace).
func (c *Session) CloseWith(code protocol.Code, reason string, reconnect bool) {
	c.tc.Lock()
	open := c.tc.OpenLocked()
	start := c.closeLocked(code, reason, reconnect)
	c.tc.Unlock()
	if start {
		c.tc.Kick()
	}
	if open {
		c.logClose(code, reason)
	}
}

// logClose logs a close the server decided: refused identities at info
// level, rate-limited and without the token; every close at debug level.
func (c *Session) logClose(code protocol.Code, reason string) {
	log := c.node.log
	if c.ident.Load() == nil && (code == protocol.CodeUnauthorized || code == protocol.CodeTokenExpired) {
		c.node.authRefusals.Log(log, slog.LevelInfo, "client refused", "code", int(code), "reason", reason, "addr", c.tc.RemoteIP())
		return
	}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("closing", "client", c.clientID, "code", int(code), "reason", reason)
	}
}

func (c *Session) closeWith(code protocol.Code, reason string, reconnect bool) {
	c.CloseWith(code, reason, reconnect)
}

// closeLocked is CloseWith for a caller holding tc's lock; it reports
// whether the caller must Kick.
func (c *Session) closeLocked(code protocol.Code, reason string, reconnect bool) bool {
	if !c.tc.OpenLocked() {
		return false
	}
	return c.tc.CloseLocked(uint16(code), reason, c.DisconnectMsg(code, reason, reconnect), reconnect, false)
}

// CheckDeadlines closes the session when its connect deadline (connectBy,
// unix nanos from the connection's start) or its token's expiry has passed,
// or when the peer was silent for two ping intervals. It reports whether
// the session goes on.
func (c *Session) CheckDeadlines(now time.Time, connectTimeout time.Duration) bool {
	id := c.ident.Load()
	if id == nil {
		if now.Sub(time.Unix(0, c.tc.Created())) > connectTimeout {
			c.closeWith(protocol.CodeUnauthorized, "no connect message in time", false)
		}
		return false
	}
	if !id.Expires.IsZero() && now.After(id.Expires) {
		c.closeWith(protocol.CodeTokenExpired, "token expired", true)
		return false
	}
	if now.Sub(time.Unix(0, c.tc.LastSeen())) > 2*c.PingInterval() {
		c.closeWith(protocol.CodeNoPong, "no pong within two ping intervals", true)
		return false
	}
	return true
}

// Format returns the index of the node Format the session receives.
func (c *Session) Format() int { return int(uint8(c.fmtEv.Load())) }

// setUserEv moves the user's Events state to state and returns the one
// before; it moves to userEvConnected only from none.
func (c *Session) setUserEv(state uint32) (prev uint32) {
	for {
		old := c.fmtEv.Load()
		prev = old >> 8 & 0xff
		if state == userEvConnected && prev != 0 {
			return prev
		}
		if c.fmtEv.CompareAndSwap(old, old&^0xff00|state<<8) {
			return prev
		}
	}
}

// Output returns the session's Output.
func (c *Session) Output() Output { return c.out }

// allowed reports whether id may do op on stream: by its token and the
// rules, or by the session's protocol (Granter).
func (c *Session) allowed(id *auth.Identity, op auth.Op, stream string) bool {
	if c.node.auth.Allowed(id, op, stream) {
		return true
	}
	g, ok := c.out.(Granter)
	return ok && g.Grants(op, stream)
}
