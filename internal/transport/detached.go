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
