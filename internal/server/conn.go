package server

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/netpoll"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/whisper"
)

// Connection states.
const (
	stateOpen    = iota // handshaken, maybe not yet connected
	stateClosing        // disconnect queued; waiting for the flush
	stateClosed         // socket closed, subscriptions gone
)

// Work a connection's worker has to do.
const (
	evRead   = 1 << iota // socket readable (or bytes left from the handshake)
	evWrite              // socket writable again after a short write
	evFlush              // new outbound messages queued
	evHangup             // the peer closed or the socket failed: read to the end
)

// How long a closing connection may take to flush before it is cut.
const closeGrace = 2 * time.Second

// Kinds of queued outbound items.
const (
	itemMsg   = iota // a protocol message, batched into a data frame
	itemClose        // a close frame; b holds its body
	itemPong         // a WebSocket pong; b holds the ping's payload
	itemRaw          // bytes written as they are (the HTTP upgrade response)
)

type outItem struct {
	b    []byte
	key  uint64 // conflation key of a whisper; 0 for everything else
	kind uint8
}

// conflateAbove is the queued bytes beyond which a receiver counts as
// behind and its whispers conflate (see behindLocked).
const conflateAbove = 8 << 10

// conflateScan bounds how far back a whisper looks for a queued one to
// replace; a queue that long is mostly publications anyway.
const conflateScan = 1024

// conn is one WebSocket connection and its protocol session.
type conn struct {
	srv   *Server
	nc    net.Conn // portable mode only; on Linux the socket is fd
	fd    int
	slot  int32
	codec protocol.Codec

	// Set once at start; read-only after.
	created int64 // unix nanos

	// Owned by whichever goroutine runs the connection's work (at most
	// one at a time): the read-side state and the unsent tail of a write.
	rare       *connRare // state few connections need, allocated on first use
	msgLimiter whisper.Limiter
	flooded    int32  // messages dropped by msgLimiter
	need       int32  // total size of the incomplete frame, when known
	partial    []byte // bytes of an incomplete frame
	pendingOut []byte // bytes a short write left unsent
	hangup     bool   // the poller reported the peer's end: read until EOF, as no new event will come

	handshaking atomic.Bool                   // the HTTP upgrade is still being read
	ident       atomic.Pointer[auth.Identity] // nil until connect succeeds
	clientID    string                        // set with ident
	info        protocol.Raw                  // the token's info claim, for presence
	lastSeen    atomic.Int64                  // unix nanos of the last inbound bytes
	lastPing    atomic.Int64

	mu         sync.Mutex // guards the following
	state      uint8
	running    bool
	events     uint8
	corked     bool // whispers queued wait for the pacer's round
	cleanClose bool // the peer sent a close frame, or was told not to reconnect: presence ends at once
	closeFd    bool // destroy ran while a worker was on the socket: the worker closes fd
	queue      []outItem
	spare      []outItem
	queued     int             // bytes in queue
	pendingLen int             // len(pendingOut), for the queue bound
	subs       []*subscription // few per connection: a slice beats a map
	joined     []string        // streams whose presence this connection is in
	closeBy    int64           // unix nanos when stateClosing gives way to closing the socket
	lastFlush  int64           // unix nanos of the last write of queued items (with a pacer)
	jobs       *jobQueue       // replies waiting for room in the queue (see pump); nil when none
	wake       chan struct{}
}

// connRare holds worker-owned state that most connections never use, so an
// idle connection does not carry it.
type connRare struct {
	upgradeToken string          // token from the upgrade request, until connect
	frag         []byte          // data of a fragmented message so far
	fragOpen     bool            // a fragmented message is open
	whispers     whisper.Limiter // whisper rate
	updates      whisper.Limiter // presence update rate
}

// r returns the connection's rare state, allocating it on first use. Only
// the goroutine running the connection's work may call it.
func (c *conn) r() *connRare {
	if c.rare == nil {
		c.rare = new(connRare)
	}
	return c.rare
}

// startConn serves a connection upgraded by the portable accept path.
func (s *Server) startConn(nc net.Conn, codec protocol.Codec, token string, extra []byte) {
	c := &conn{
		srv:     s,
		nc:      nc,
		fd:      -1,
		codec:   codec,
		created: time.Now().UnixNano(),
		partial: extra,
		wake:    make(chan struct{}, 1), // set before the registry publishes c
	}
	if token != "" {
		c.r().upgradeToken = token
	}
	c.lastSeen.Store(c.created)
	s.reg.add(c)
	s.metrics.connectionsTotal.Add(1)
	c.startPortable()
}

// onReady is the poller's handler.
func (s *Server) onReady(key int32, ev netpoll.Event) {
	c := s.reg.get(key)
	if c == nil {
		return
	}
	var want uint8
	if ev&netpoll.Readable != 0 {
		want |= evRead
	}
	if ev&netpoll.Writable != 0 {
		want |= evWrite
	}
	if ev&netpoll.Hangup != 0 {
		want |= evHangup
	}
	c.schedule(want)
}

// schedule records work for the connection and starts a worker on it unless
// one is running already.
func (c *conn) schedule(ev uint8) {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	c.events |= ev
	if c.running {
		c.mu.Unlock()
		return
	}
	c.running = true
	c.mu.Unlock()
	c.kick()
}

// run does the connection's pending work until there is none. Only one
// goroutine runs it at a time.
func (c *conn) run() {
	for {
		c.mu.Lock()
		ev := c.events
		c.events = 0
		if ev == 0 || c.state == stateClosed {
			c.running = false
			mustClose := c.closeFd
			c.closeFd = false
			c.mu.Unlock()
			if mustClose {
				closeFd(c.fd)
			}
			return
		}
		c.mu.Unlock()
		if ev&evHangup != 0 {
			c.hangup = true
		}
		if ev&evRead != 0 {
			c.readAvailable()
			// Replies the read queued go out now, before a next read can
			// meet the peer's EOF and drop them with the queue (a ping or
			// a close frame followed by FIN). Held whispers set no evFlush.
			c.mu.Lock()
			ev |= c.events & evFlush
			c.events &^= evFlush
			c.mu.Unlock()
		}
		// A read does not flush by itself: what it queued asked for a flush
		// (evFlush), and whispers held for the pacer must stay held. The
		// edge-triggered poller reports Writable with every Readable, so
		// evWrite counts only while a short write left bytes.
		if ev&evFlush != 0 || (ev&evWrite != 0 && len(c.pendingOut) > 0) {
			c.flush()
		}
	}
}

func (c *conn) isOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state != stateClosed
}

// enqueueLocked queues b for sending and makes sure a flush is scheduled.
// It closes the connection with 4008 when the queue would exceed its bound.
// Lock c.mu must be held.
func (c *conn) enqueueLocked(it outItem) (scheduled bool) {
	if c.state != stateOpen {
		return false
	}
	if it.key != 0 && c.behindLocked() {
		// A whisper replaces the same sender's queued one of the same event
		// in place: a slow receiver gets fewer, fresher cursors.
		for i, n := len(c.queue)-1, 0; i >= 0 && n < conflateScan; i, n = i-1, n+1 {
			if c.queue[i].key == it.key {
				c.queued += len(it.b) - len(c.queue[i].b)
				c.queue[i].b = it.b
				c.srv.metrics.conflated.Add(1)
				return false // a flush is already pending for the queued one
			}
		}
	}
	if it.key != 0 && c.queued+c.pendingLen+len(it.b) > c.srv.cfg.MaxQueue {
		c.srv.metrics.drops[dropWhisperQueueFull].Add(1)
		return false // ephemeral: dropped, never a reason to disconnect
	}
	if c.queued+c.pendingLen+len(it.b) > c.srv.cfg.MaxQueue {
		c.srv.metrics.drops[dropSlowConsumer].Add(1)
		// Whether a worker must be started is closeLocked's to say: one
		// may be running already, and a second must never run beside it.
		return c.closeLocked(protocol.CodeSlowConsumer, "outbound queue over its bound", true, true)
	}
	c.queue = append(c.queue, it)
	c.queued += len(it.b)
	if it.key != 0 && c.srv.pacer != nil {
		// Whisper-only output that flushed less than a pace ago waits for
		// the pacer's round (see pacer).
		if c.corked {
			return false
		}
		every := int64(c.srv.pacer.every)
		if now, due := time.Now().UnixNano(), c.lastFlush+every; now < due {
			c.corked = true
			// Never more than a pace away, should the wall clock step back.
			c.srv.pacer.hold(c, min(due, now+every))
			return false
		}
	}
	return c.wantFlushLocked()
}

// behindLocked reports whether the connection is a slow receiver: the socket
// did not take all of the last write, or more is queued than one pace of a
// busy cursor room. Only then do whispers conflate; a receiver that keeps up
// gets every one. Lock c.mu must be held.
func (c *conn) behindLocked() bool {
	return c.pendingLen > 0 || c.queued >= conflateAbove
}

// wantFlushLocked marks a flush pending; it reports whether the caller must
// start one with kick once c.mu is released. Lock c.mu must be held.
func (c *conn) wantFlushLocked() bool {
	c.events |= evFlush
	if c.running {
		return false
	}
	c.running = true
	return true
}

// kick starts the worker that wantFlushLocked asked for, after c.mu is
// released.
func (c *conn) kick() {
	if c.wake != nil {
		select {
		case c.wake <- struct{}{}:
		default:
		}
		return
	}
	c.srv.pool.push(c)
}

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
	c.mu.Lock()
	start := c.enqueueLocked(outItem{b: b})
	c.mu.Unlock()
	if start {
		c.kick()
	}
}

// sendError answers a request with an error reply.
func (c *conn) sendError(id uint64, stream string, code protocol.Code, reason string) {
	c.send(&protocol.ErrorReply{ID: id, S: stream, Code: code, Reason: reason, Retry: code.Reconnect()})
}

// closeWith sends disconnect with code and a close frame, then closes the
// socket once they are flushed (or after closeGrace).
func (c *conn) closeWith(code protocol.Code, reason string, reconnect bool) {
	c.mu.Lock()
	start := c.closeLocked(code, reason, reconnect, false)
	c.mu.Unlock()
	if start {
		c.kick()
	}
}

// closeLocked implements closeWith; dropQueue discards what is queued (for
// a slow consumer, whose queue is the problem). Lock c.mu must be held.
func (c *conn) closeLocked(code protocol.Code, reason string, reconnect, dropQueue bool) bool {
	if c.state != stateOpen {
		return false
	}
	if dropQueue {
		clear(c.queue)
		c.queue = c.queue[:0]
		c.queued = 0
	}
	msg, _ := protocol.AppendMessage(c.codec, nil, &protocol.Disconnect{Code: code, Reason: reason, Reconnect: reconnect})
	c.queue = append(c.queue, outItem{b: msg}, outItem{b: closeBody(code, reason), kind: itemClose})
	c.state = stateClosing
	// A client told not to reconnect is gone for good: its presence ends at
	// once. One told to reconnect keeps the presence grace.
	c.cleanClose = c.cleanClose || !reconnect
	// A slow consumer gets the same grace: its queue is gone, and a reader
	// that resumes within it still reads the 4008 behind what the kernel
	// already holds. One that never reads again cannot get it in-band.
	c.closeBy = time.Now().Add(closeGrace).UnixNano()
	c.srv.metrics.countOut(protocol.TypeDisconnect, 1)
	c.srv.metrics.countDisconnect(code)
	return c.wantFlushLocked()
}

// destroy closes the socket and forgets the connection. abrupt tells
// whether the peer vanished (counted in metrics; presence looks at whether
// the peer sent a close frame).
func (c *conn) destroy(abrupt bool) {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	c.state = stateClosed
	subs := c.subs
	c.subs = nil
	clear(c.queue)
	c.queue, c.spare, c.queued = nil, nil, 0
	c.jobs = nil
	wake := c.wake
	clean := c.cleanClose
	// A raw descriptor is closed only when no worker uses it, or its
	// number could be reused by a new connection under the worker's feet.
	closeNow := c.nc == nil && !c.running
	c.closeFd = c.nc == nil && c.running
	c.mu.Unlock()

	s := c.srv
	s.reg.remove(c.slot, c)
	if c.nc != nil {
		_ = c.nc.Close()
	} else {
		_ = s.poller.Remove(c.fd)
		if closeNow {
			closeFd(c.fd)
		}
	}
	if wake != nil {
		select { // let the portable writer see the close
		case wake <- struct{}{}:
		default:
		}
	}
	// Presence: a peer that sent a close frame, or that was closed without
	// reconnect, left; any other end (a dropped socket, a drain, a slow
	// consumer) gets the grace.
	c.leaveAll(!clean)
	if abrupt {
		s.metrics.dropped.Add(1)
	}
	for _, sub := range subs {
		s.unsubscribe(sub)
	}
	if c.ident.Load() != nil {
		s.metrics.connected.Add(-1)
	}
}

// check runs the connection's timed duties; the sweeper calls it about once
// a second.
func (c *conn) check(now time.Time) {
	c.mu.Lock()
	state, closeBy := c.state, c.closeBy
	c.mu.Unlock()
	switch state {
	case stateClosed:
		return
	case stateClosing:
		if now.UnixNano() > closeBy {
			c.destroy(true)
		}
		return
	}
	if c.handshaking.Load() {
		if now.Sub(time.Unix(0, c.created)) > handshakeTimeout {
			c.destroy(true)
		}
		return
	}
	id := c.ident.Load()
	if id == nil {
		if now.Sub(time.Unix(0, c.created)) > c.srv.cfg.ConnectTimeout {
			c.closeWith(protocol.CodeUnauthorized, "no connect message in time", false)
		}
		return
	}
	if !id.Expires.IsZero() && now.After(id.Expires) {
		c.closeWith(protocol.CodeTokenExpired, "token expired", true)
		return
	}
	interval := c.srv.cfg.PingInterval
	if now.Sub(time.Unix(0, c.lastSeen.Load())) > 2*interval {
		c.closeWith(protocol.CodeNoPong, "no pong within two ping intervals", true)
		return
	}
	if now.Sub(time.Unix(0, c.lastPing.Load())) >= interval {
		c.lastPing.Store(now.UnixNano())
		c.send(&protocol.Ping{})
	}
}
