package transport

// startPortable serves a connection with its own reader and writer
// goroutines; used where epoll is unavailable (or with ForcePortable).
// c.wake must already be set.
func (c *Conn) startPortable() {
	go c.writeLoop()
	go c.readLoop()
}

func (c *Conn) readLoop() {
	if len(c.partial) > 0 {
		c.partial = c.processFrames(c.partial)
	}
	for c.Alive() {
		c.readAvailable()
	}
}

func (c *Conn) writeLoop() {
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
