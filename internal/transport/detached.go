package transport

import "time"

// Detached returns a connection with no socket whose queue is never written
// (it counts as having a worker), for benchmarks and tests of the delivery
// path. newSession builds its session.
func (t *Transport) Detached(newSession func(*Conn) Session) *Conn {
	c := &Conn{t: t, fd: -1, created: time.Now().UnixNano(), running: true}
	c.lastSeen.Store(c.created)
	c.sess = newSession(c)
	return c
}

// QueueLen returns the number of queued messages.
func (c *Conn) QueueLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Discard drops everything queued (for detached connections).
func (c *Conn) Discard() {
	c.mu.Lock()
	clear(c.queue)
	c.queue, c.queued = c.queue[:0], 0
	c.mu.Unlock()
}

// SetBehind makes the connection count as a receiver whose socket refused
// bytes, so that whispers conflate (for detached connections).
func (c *Conn) SetBehind() {
	c.mu.Lock()
	c.pendingLen = 1
	c.mu.Unlock()
}

// Socketless starts a connection that has no socket of its own: an HTTP
// session served by requests that come and go (long polling). Its session
// must be a Framer. Nothing writes its queue: a request takes what is
// queued with Take, and Ready says when there is something to take. The
// connection counts among the transport's (Count, Conns, Sweep), and its
// session's Check runs as any other's.
func (t *Transport) Socketless(newSession func(*Conn) Session) *Conn {
	c := &Conn{t: t, fd: -1, created: time.Now().UnixNano(), framing: Framed, wake: make(chan struct{}, 1)}
	c.lastSeen.Store(c.created)
	c.sess = newSession(c)
	t.reg.add(c)
	t.Counters.Accepted.Add(1)
	if st, ok := c.sess.(Starter); ok {
		st.Started()
	}
	return c
}

// Ready is signalled when a socketless connection has something to take
// (or has closed). Only one request should wait on it at a time.
func (c *Conn) Ready() <-chan struct{} { return c.wake }

// Take appends what a socketless connection has queued to dst, as its
// Framer writes it, and reports whether the connection ended with it (it
// is then closed, and Take returns nothing more).
func (c *Conn) Take(dst []byte) (out []byte, ended bool) {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return dst, true
	}
	items := c.queue
	c.queue, c.queued = nil, 0
	c.events, c.running = 0, false
	state := c.state
	jobs := state == stateOpen && c.sess.WaitingLocked()
	c.mu.Unlock()
	dst, end := appendFramed(dst, items, c.sess.(Framer))
	n := 0
	for _, it := range items {
		n += len(it.b)
	}
	c.t.Counters.BytesOut.Add(int64(n))
	if end || state == stateClosing && len(items) > 0 {
		c.destroy(false)
		return dst, true
	}
	if jobs {
		c.sess.Room()
	}
	return dst, false
}

// Touch records that the peer was heard from (a request of its session
// arrived), for a connection whose bytes do not come through its socket.
func (c *Conn) Touch() { c.lastSeen.Store(time.Now().UnixNano()) }
