package transport

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Connection states.
const (
	stateOpen    = iota // handshaken (or handshaking)
	stateClosing        // a close frame is queued; waiting for the flush
	stateClosed         // socket closed, session told
)

// Work a connection's worker has to do.
const (
	evRead   = 1 << iota // socket readable (or bytes left from the handshake)
	evWrite              // socket writable again after a short write
	evFlush              // new outbound messages queued
	evHangup             // the peer closed or the socket failed: read to the end
)

// CloseGrace is how long a closing connection may take to flush before it
// is cut.
const CloseGrace = 2 * time.Second

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

// Framing says how a connection's messages become data frames.
type Framing uint8

// Framings.
const (
	// TextLines batches queued messages into one text frame, a newline
	// between them.
	TextLines Framing = iota
	// BinaryConcat batches queued messages into one binary frame, end to
	// end (each message is self-delimiting).
	BinaryConcat
	// Text sends each message as a text frame of its own.
	Text
	// Binary sends each message as a binary frame of its own.
	Binary
	// Framed is no WebSocket: the connection is a plain HTTP response
	// (server-sent events) whose Session is a Framer and writes every byte,
	// the status line included; what the peer sends after its request is
	// read and ignored.
	Framed
)

// conflateAbove is the queued bytes beyond which a receiver counts as
// behind and its whispers conflate (see behindLocked).
const conflateAbove = 8 << 10

// conflateScan bounds how far back a whisper looks for a queued one to
// replace; a queue that long is mostly publications anyway.
const conflateScan = 1024

// Conn is one WebSocket connection: its socket, its read state and its
// outbound queue. Its lock (Lock) also guards the session's state that
// delivery touches, so that a delivery takes one lock.
type Conn struct {
	t    *Transport
	sess Session  // set once at the upgrade
	nc   net.Conn // portable mode only; on Linux the socket is fd
	fd   int
	slot int32

	// Set once at start; read-only after.
	created int64 // unix nanos
	framing Framing

	// Owned by whichever goroutine runs the connection's work (at most
	// one at a time): the read-side state and the unsent tail of a write.
	frag       *fragment // an open fragmented message; nil when none
	need       int32     // total size of the incomplete frame, when known
	partial    []byte    // bytes of an incomplete frame
	pendingOut []byte    // bytes a short write left unsent
	hangup     bool      // the poller reported the peer's end: read until EOF, as no new event will come

	handshaking atomic.Bool  // the HTTP upgrade is still being read
	lastSeen    atomic.Int64 // unix nanos of the last inbound bytes

	mu         sync.Mutex // guards the following, and the session state documented as guarded by it
	state      uint8
	running    bool
	events     uint8
	corked     bool // whispers queued wait for the pacer's round
	cleanClose bool // the peer sent a close frame, or was told not to reconnect
	closeFd    bool // destroy ran while a worker was on the socket: the worker closes fd
	queue      []outItem
	spare      []outItem
	queued     int   // bytes in queue
	pendingLen int   // len(pendingOut), for the queue bound
	closeBy    int64 // unix nanos when stateClosing gives way to closing the socket
	lastFlush  int64 // unix nanos of the last write of queued items (with a pacer)
	wake       chan struct{}
}

// fragment is the data of a fragmented message so far.
type fragment struct{ b []byte }

// Lock takes the connection's lock.
func (c *Conn) Lock() { c.mu.Lock() }

// Unlock releases it.
func (c *Conn) Unlock() { c.mu.Unlock() }

// Created returns when the connection was accepted (unix nanos).
func (c *Conn) Created() int64 { return c.created }

// RemoteIP is the peer's IP address, as the socket sees it (a proxy's, when
// one is in between); empty when it cannot be read. It makes a system call:
// for the upgrade, not for every message.
func (c *Conn) RemoteIP() string {
	if c.nc != nil {
		if a, ok := c.nc.RemoteAddr().(*net.TCPAddr); ok {
			return a.IP.String()
		}
		host, _, _ := net.SplitHostPort(c.nc.RemoteAddr().String())
		return host
	}
	return peerIP(c.fd)
}

// LastSeen returns when bytes last arrived (unix nanos).
func (c *Conn) LastSeen() int64 { return c.lastSeen.Load() }

// SetFraming sets how messages become frames; the Handler calls it in
// Upgrade.
func (c *Conn) SetFraming(f Framing) { c.framing = f }

// Framer is the Session of a Framed connection: it writes the connection's
// messages in its own format (a response of server-sent events). Its calls
// run on the connection's writer, one at a time.
type Framer interface {
	// Append appends what msg becomes on the wire to dst; end reports that
	// the connection must close once that is written (nothing after it is).
	Append(dst, msg []byte) (out []byte, end bool)
	// End appends what precedes the close of the connection, when it
	// closes without Append having ended it.
	End(dst []byte) []byte
}

// RequestBody returns the body of the request being upgraded (the head
// and the body together take at most 16 KiB). Valid only during Upgrade,
// when the read state holds nothing else.
func (c *Conn) RequestBody() []byte { return c.partial }

// Session returns the connection's session, nil before the upgrade.
func (c *Conn) Session() Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// Transport returns the connection's transport.
func (c *Conn) Transport() *Transport { return c.t }

// startPortableConn serves an upgraded connection of the portable accept
// path.
func (t *Transport) startPortableConn(nc net.Conn, extra []byte) *Conn {
	c := &Conn{
		t:       t,
		nc:      nc,
		fd:      -1,
		created: time.Now().UnixNano(),
		partial: extra,
		wake:    make(chan struct{}, 1), // set before the registry publishes c
	}
	c.lastSeen.Store(c.created)
	return c
}

// schedule records work for the connection and starts a worker on it unless
// one is running already.
func (c *Conn) schedule(ev uint8) {
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
	c.Kick()
}

// run does the connection's pending work until there is none. Only one
// goroutine runs it at a time.
func (c *Conn) run() {
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

// Alive reports whether the socket is not closed yet.
func (c *Conn) Alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state != stateClosed
}

// Accepting reports whether the connection still takes input: it is open
// and no close is under way.
func (c *Conn) Accepting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stateOpen
}

// OpenLocked reports whether messages may still be queued. The lock must be
// held.
func (c *Conn) OpenLocked() bool { return c.state == stateOpen }

// EnqueueLocked queues a message for sending and reports whether the caller
// must call Kick once the lock is released. A whisper (key != 0) replaces
// the same key's queued one when the receiver is behind, waits for the
// pacer, and is dropped rather than overflow the queue; anything else
// overflowing it ends the connection as a slow consumer. The lock must be
// held.
func (c *Conn) EnqueueLocked(b []byte, key uint64) (kick bool) {
	return c.enqueueLocked(outItem{b: b, key: key})
}

func (c *Conn) enqueueLocked(it outItem) bool {
	b, key := it.b, it.key
	if c.state != stateOpen {
		return false
	}
	if key != 0 && c.behindLocked() {
		// A whisper replaces the same sender's queued one of the same event
		// in place: a slow receiver gets fewer, fresher cursors.
		for i, n := len(c.queue)-1, 0; i >= 0 && n < conflateScan; i, n = i-1, n+1 {
			if c.queue[i].key == key {
				c.queued += len(b) - len(c.queue[i].b)
				c.queue[i].b = b
				c.t.Counters.Conflated.Add(1)
				return false // a flush is already pending for the queued one
			}
		}
	}
	if key != 0 && c.queued+c.pendingLen+len(b) > c.t.cfg.MaxQueue {
		c.t.Counters.WhisperQueueFull.Add(1)
		return false // ephemeral: dropped, never a reason to disconnect
	}
	if c.queued+c.pendingLen+len(b) > c.t.cfg.MaxQueue {
		c.t.Counters.SlowConsumers.Add(1)
		// At most a line every 10 s, written off the lock the caller holds.
		if held, ok := c.t.slowLog.Take(); ok {
			go c.t.log.Info("a slow consumer was disconnected: its outbound queue passed --max-queue", "max_queue", c.t.cfg.MaxQueue, "also", held)
		}
		code, msg, reconnect := c.sess.Goodbye(SlowConsumer, "outbound queue over its bound")
		// Whether a worker must be started is CloseLocked's to say: one
		// may be running already, and a second must never run beside it.
		return c.CloseLocked(code, "outbound queue over its bound", msg, reconnect, true)
	}
	c.queue = append(c.queue, it)
	c.queued += len(b)
	if key != 0 && c.t.pacer != nil {
		// Whisper-only output that flushed less than a pace ago waits for
		// the pacer's round (see pacer).
		if c.corked {
			return false
		}
		every := int64(c.t.pacer.every)
		if now, due := time.Now().UnixNano(), c.lastFlush+every; now < due {
			c.corked = true
			// Never more than a pace away, should the wall clock step back.
			c.t.pacer.hold(c, min(due, now+every))
			return false
		}
	}
	return c.wantFlushLocked()
}

// QueuedLocked returns the bytes queued and not yet taken by the socket.
// The lock must be held.
func (c *Conn) QueuedLocked() int { return c.queued + c.pendingLen }

// MaxQueue returns the queue's bound in bytes.
func (c *Conn) MaxQueue() int { return c.t.cfg.MaxQueue }

// behindLocked reports whether the connection is a slow receiver: the socket
// did not take all of the last write, or more is queued than one pace of a
// busy cursor room. Only then do whispers conflate; a receiver that keeps up
// gets every one. Lock c.mu must be held.
func (c *Conn) behindLocked() bool {
	return c.pendingLen > 0 || c.queued >= conflateAbove
}

// wantFlushLocked marks a flush pending; it reports whether the caller must
// start one with Kick once c.mu is released. Lock c.mu must be held.
func (c *Conn) wantFlushLocked() bool {
	c.events |= evFlush
	if c.running {
		return false
	}
	c.running = true
	return true
}

// Kick starts the worker that a Locked call asked for, after the lock is
// released.
func (c *Conn) Kick() {
	if c.wake != nil {
		select {
		case c.wake <- struct{}{}:
		default:
		}
		return
	}
	c.t.pool.push(c)
}

// Send queues an encoded message.
func (c *Conn) Send(b []byte) {
	c.mu.Lock()
	start := c.EnqueueLocked(b, 0)
	c.mu.Unlock()
	if start {
		c.Kick()
	}
}

// Close queues msg (the protocol's goodbye; nil for none) and a close frame
// with code and reason, then closes the socket once they are flushed (or
// after CloseGrace).
func (c *Conn) Close(code uint16, reason string, msg []byte, reconnect bool) {
	c.mu.Lock()
	start := c.CloseLocked(code, reason, msg, reconnect, false)
	c.mu.Unlock()
	if start {
		c.Kick()
	}
}

// CloseLocked implements Close; dropQueue discards what is queued (for a
// slow consumer, whose queue is the problem). It reports whether the caller
// must Kick. The lock must be held.
func (c *Conn) CloseLocked(code uint16, reason string, msg []byte, reconnect, dropQueue bool) bool {
	if c.state != stateOpen {
		return false
	}
	if dropQueue {
		clear(c.queue)
		c.queue = c.queue[:0]
		c.queued = 0
	}
	if msg != nil {
		c.queue = append(c.queue, outItem{b: msg})
	}
	c.queue = append(c.queue, outItem{b: closeBody(code, reason), kind: itemClose})
	c.state = stateClosing
	// A client told not to reconnect is gone for good (Session.Closed
	// hears clean). One told to reconnect keeps, for instance, a presence
	// grace.
	c.cleanClose = c.cleanClose || !reconnect
	// A slow consumer gets the same grace: its queue is gone, and a reader
	// that resumes within it still reads the goodbye behind what the kernel
	// already holds. One that never reads again cannot get it in-band.
	c.closeBy = time.Now().Add(CloseGrace).UnixNano()
	return c.wantFlushLocked()
}

// Destroy closes the socket at once and tells the session.
func (c *Conn) Destroy() { c.destroy(false) }

// destroy closes the socket and forgets the connection. abrupt tells
// whether the peer vanished (counted).
func (c *Conn) destroy(abrupt bool) {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	c.state = stateClosed
	clear(c.queue)
	c.queue, c.spare, c.queued = nil, nil, 0
	wake := c.wake
	clean := c.cleanClose
	sess := c.sess
	// A raw descriptor is closed only when no worker uses it, or its
	// number could be reused by a new connection under the worker's feet.
	closeNow := c.nc == nil && !c.running
	c.closeFd = c.nc == nil && c.running
	c.mu.Unlock()

	t := c.t
	t.reg.remove(c.slot, c)
	if c.nc != nil {
		_ = c.nc.Close()
	} else {
		if t.poller != nil {
			_ = t.poller.Remove(c.fd)
		}
		if closeNow && c.fd >= 0 {
			closeFd(c.fd)
		}
	}
	if wake != nil {
		select { // let the portable writer see the close
		case wake <- struct{}{}:
		default:
		}
	}
	if abrupt {
		t.Counters.Dropped.Add(1)
	}
	if sess != nil {
		sess.Closed(clean)
	}
}

// check runs the connection's timed duties; the sweeper calls it about once
// a second.
func (c *Conn) check(now time.Time) {
	c.mu.Lock()
	state, closeBy, sess := c.state, c.closeBy, c.sess
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
		if now.Sub(time.Unix(0, c.created)) > HandshakeTimeout {
			c.destroy(true)
		}
		return
	}
	if sess != nil {
		sess.Check(now)
	}
}

// ClosedLocked reports whether the socket is closed. The lock must be held.
func (c *Conn) ClosedLocked() bool { return c.state == stateClosed }
