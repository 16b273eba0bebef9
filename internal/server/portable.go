package server

// startPortable serves a connection with its own reader and writer
// goroutines; used where epoll is unavailable (or with ForcePortable).
// c.wake must already be set.
func (c *conn) startPortable() {
	go c.writeLoop()
	go c.readLoop()
}

func (c *conn) readLoop() {
	if len(c.partial) > 0 {
		c.partial = c.processFrames(c.partial)
	}
	for c.isOpen() {
		c.readAvailable()
	}
}

func (c *conn) writeLoop() {
	for range c.wake {
		c.mu.Lock()
		if c.state == stateClosed {
			c.mu.Unlock()
			return
		}
		c.events, c.running = 0, false
		c.mu.Unlock()
		c.flush()
	}
}
