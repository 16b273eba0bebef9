package server

import (
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/transport"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/whisper"
)

// maxPreConnectMessage bounds a WebSocket message before connect
// succeeded (a connect with a large token is a few KiB).
const maxPreConnectMessage = 64 << 10

// conn is the huddle.v1 session of one WebSocket connection. Its socket and
// queue are tc's; the state marked "guarded by tc" is under tc's lock, which
// is also the queue's, so a delivery takes one lock.
type conn struct {
	tc    *transport.Conn
	srv   *Server
	codec protocol.Codec

	// Owned by whichever goroutine runs the connection's work (at most
	// one at a time).
	flooded    int32     // messages dropped by msgLimiter
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

// connRare holds worker-owned state that most connections never use, so an
// idle connection does not carry it.
type connRare struct {
	upgradeToken string          // token from the upgrade request, until connect
	whispers     whisper.Limiter // whisper rate
	updates      whisper.Limiter // presence update rate
}

var _ transport.Session = (*conn)(nil)

// r returns the connection's rare state, allocating it on first use. Only
// the goroutine running the connection's work may call it.
func (c *conn) r() *connRare {
	if c.rare == nil {
		c.rare = new(connRare)
	}
	return c.rare
}

// UpgradePath implements transport.Handler: /ws is the only WebSocket
// endpoint.
func (s *Server) UpgradePath(path string) bool { return path == wsPath || path == wsPath+"/" }

// Upgrade implements transport.Handler: it answers the upgrade and starts
// a huddle.v1 session.
func (s *Server) Upgrade(tc *transport.Conn, head []byte, w io.Writer) (transport.Session, error) {
	codec, token, err := s.upgradeHead(head, w)
	if err != nil {
		return nil, err
	}
	c := &conn{tc: tc, srv: s, codec: codec}
	if token != "" {
		c.r().upgradeToken = token
	}
	if codec.Binary() {
		tc.SetFraming(transport.BinaryConcat)
	} else {
		tc.SetFraming(transport.TextLines)
	}
	return c, nil
}

// OnMessage implements transport.Session.
func (c *conn) OnMessage(payload []byte) { c.handle(payload) }

// MaxMessage implements transport.Session: before connect, a message need
// only carry a token, so a client that has not authenticated may not make
// the server hold a megabyte.
func (c *conn) MaxMessage() int {
	if c.ident.Load() == nil {
		return min(c.srv.cfg.MaxMessage, maxPreConnectMessage)
	}
	return c.srv.cfg.MaxMessage
}

// Goodbye implements transport.Session.
func (c *conn) Goodbye(r transport.Reason, detail string) (uint16, []byte, bool) {
	code, reconnect := protocol.CodeBadRequest, false
	switch r {
	case transport.TooLarge:
		code = protocol.CodeTooLarge
	case transport.SlowConsumer:
		code, reconnect = protocol.CodeSlowConsumer, true
		c.srv.metrics.drops[dropSlowConsumer].Add(1)
	}
	return uint16(code), c.disconnectMsg(code, detail, reconnect), reconnect
}

// disconnectMsg encodes a disconnect and counts it.
func (c *conn) disconnectMsg(code protocol.Code, reason string, reconnect bool) []byte {
	msg, _ := protocol.AppendMessage(c.codec, nil, &protocol.Disconnect{Code: code, Reason: reason, Reconnect: reconnect})
	c.srv.metrics.countOut(protocol.TypeDisconnect, 1)
	c.srv.metrics.countDisconnect(code)
	return msg
}

// WaitingLocked implements transport.Session: reply jobs wait for room.
func (c *conn) WaitingLocked() bool { return c.jobs != nil && !c.jobs.busy }

// Room implements transport.Session.
func (c *conn) Room() { c.pump() }

// Closed implements transport.Session: presence ends (at once for a peer
// that sent a close frame or was told not to reconnect, after the grace
// for any other end: a dropped socket, a drain, a slow consumer), and the
// subscriptions go.
func (c *conn) Closed(clean bool) {
	c.tc.Lock()
	subs := c.subs
	c.subs = nil
	c.jobs = nil
	c.tc.Unlock()
	s := c.srv
	c.leaveAll(!clean)
	for _, sub := range subs {
		s.unsubscribe(sub)
	}
	if c.ident.Load() != nil {
		s.metrics.connected.Add(-1)
	}
}

// enqueueLocked queues an encoded message (see transport.Conn.EnqueueLocked).
func (c *conn) enqueueLocked(b []byte, key uint64) bool { return c.tc.EnqueueLocked(b, key) }

// send encodes m and queues it.
func (c *conn) send(m protocol.Message) {
	b, err := protocol.AppendMessage(c.codec, nil, m)
	if err != nil {
		c.srv.log.Error("encode failed", "type", m.Type(), "err", err)
		return
	}
	c.sendEncoded(m.Type(), b)
}

// sendEncoded queues b, a message of type typ already encoded in the
// connection's codec.
func (c *conn) sendEncoded(typ string, b []byte) {
	c.srv.metrics.countOut(typ, 1)
	c.tc.Send(b)
}

// sendError answers a request with an error reply.
func (c *conn) sendError(id uint64, stream string, code protocol.Code, reason string) {
	c.send(&protocol.ErrorReply{ID: id, S: stream, Code: code, Reason: reason, Retry: code.Reconnect()})
}

// closeWith sends disconnect with code and a close frame, then closes the
// socket once they are flushed (or after transport.CloseGrace).
func (c *conn) closeWith(code protocol.Code, reason string, reconnect bool) {
	c.tc.Lock()
	start := c.closeLocked(code, reason, reconnect)
	c.tc.Unlock()
	if start {
		c.tc.Kick()
	}
}

// closeLocked is closeWith for a caller holding tc's lock; it reports
// whether the caller must Kick.
func (c *conn) closeLocked(code protocol.Code, reason string, reconnect bool) bool {
	if !c.tc.OpenLocked() {
		return false
	}
	return c.tc.CloseLocked(uint16(code), reason, c.disconnectMsg(code, reason, reconnect), reconnect, false)
}

// Check implements transport.Session: the connect deadline, token expiry,
// pings and silent peers.
func (c *conn) Check(now time.Time) {
	id := c.ident.Load()
	if id == nil {
		if now.Sub(time.Unix(0, c.tc.Created())) > c.srv.cfg.ConnectTimeout {
			c.closeWith(protocol.CodeUnauthorized, "no connect message in time", false)
		}
		return
	}
	if !id.Expires.IsZero() && now.After(id.Expires) {
		c.closeWith(protocol.CodeTokenExpired, "token expired", true)
		return
	}
	interval := c.srv.cfg.PingInterval
	if now.Sub(time.Unix(0, c.tc.LastSeen())) > 2*interval {
		c.closeWith(protocol.CodeNoPong, "no pong within two ping intervals", true)
		return
	}
	if now.Sub(time.Unix(0, c.lastPing.Load())) >= interval {
		c.lastPing.Store(now.UnixNano())
		c.send(&protocol.Ping{})
	}
}

// firstPing sets when the first ping is due: at a random point of the last
// quarter of the first interval. Connections that arrive together (a
// restart, a reconnect storm) would otherwise be pinged in the same sweep
// every interval, and their pongs read together, a burst of 2N syscalls
// that stalls the rest of the node (about 150 ms every 25 s at 10,000
// connections). A ping never comes later than one interval.
func (c *conn) firstPing() {
	c.lastPing.Store(time.Now().UnixNano() - rand.Int64N(int64(c.srv.cfg.PingInterval)/4+1))
}
