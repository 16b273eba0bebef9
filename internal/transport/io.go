package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"time"
)

const (
	readBufSize  = 16 << 10
	writeBufSize = 32 << 10
	maxBatch     = 64 << 10 // bytes of messages batched into one frame
)

var (
	readBufs  = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
	writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, writeBufSize); return &b }}
)

var errWouldBlock = errors.New("would block")

var errEOF = io.EOF

var newline = []byte{'\n'}

// readRaw reads what the socket has without waiting (portable mode: waits).
func (c *Conn) readRaw(b []byte) (int, error) {
	if c.nc != nil {
		return c.nc.Read(b)
	}
	return rawRead(c.fd, b)
}

// writeRaw writes as much of b as the socket takes without waiting (or, in
// portable mode, all of it within a deadline).
func (c *Conn) writeRaw(b []byte) (int, error) {
	if c.nc != nil {
		_ = c.nc.SetWriteDeadline(time.Now().Add(CloseGrace))
		return c.nc.Write(b)
	}
	return rawWrite(c.fd, b)
}

// readAvailable reads what the socket holds and processes every complete
// frame. An incomplete frame's bytes are kept in c.partial, so a peer that
// sends half a frame and stalls holds no worker.
func (c *Conn) readAvailable() {
	if c.handshaking.Load() {
		c.readHandshake()
		return
	}
	var buf []byte
	var pooled *[]byte
	n0 := len(c.partial)
	if c.need > readBufSize {
		// A large frame is arriving: read straight into its buffer.
		if cap(c.partial) < int(c.need) {
			grown := make([]byte, n0, int(c.need))
			copy(grown, c.partial)
			c.partial = grown
		}
		buf = c.partial[:cap(c.partial)]
	} else {
		pooled = readBufs.Get().(*[]byte)
		buf = *pooled
		copy(buf, c.partial)
	}
	n, err := c.readRaw(buf[n0:])
	if err != nil && err != errWouldBlock {
		if pooled != nil {
			readBufs.Put(pooled)
		}
		c.destroy(true)
		return
	}
	if n == len(buf)-n0 || (n > 0 && c.hangup) {
		c.readAgain()
	}
	if n > 0 {
		c.lastSeen.Store(time.Now().UnixNano())
		c.t.Counters.BytesIn.Add(int64(n))
	}
	rest := c.processFrames(buf[:n0+n])
	switch {
	case len(rest) == 0:
		c.partial, c.need = nil, 0
	case pooled == nil:
		m := copy(buf, rest)
		c.partial = buf[:m]
	default:
		if cap(c.partial) < len(rest) || cap(c.partial) > 4*readBufSize {
			c.partial = make([]byte, 0, max(len(rest), 256))
		}
		c.partial = append(c.partial[:0], rest...)
	}
	if pooled != nil {
		readBufs.Put(pooled)
	}
}

// readAgain asks the worker for another read: a read that filled its buffer
// may have left bytes, and the edge-triggered poller reports only new ones.
func (c *Conn) readAgain() {
	if c.nc != nil {
		return // portable mode: the reader goroutine reads on anyway
	}
	c.mu.Lock()
	c.events |= evRead
	c.mu.Unlock()
}

// processFrames handles every complete frame in data and returns the bytes
// of an incomplete last frame.
func (c *Conn) processFrames(data []byte) []byte {
	if c.framing == Framed {
		return nil // an HTTP response: what the peer sends is ignored
	}
	maxMsg := c.sess.MaxMessage()
	for len(data) > 0 {
		if !c.Accepting() {
			return nil
		}
		h, hl, err := parseHeader(data)
		if err != nil {
			c.fail(BadFrame, "bad WebSocket frame: "+err.Error())
			return nil
		}
		if hl == 0 {
			c.need = 0
			return data
		}
		if h.length > int64(maxMsg) || (h.op == opContinuation && c.frag != nil && int64(len(c.frag.b))+h.length > int64(maxMsg)) {
			c.fail(TooLarge, "message over the limit of "+itoa(maxMsg)+" bytes")
			return nil
		}
		total := hl + int(h.length)
		if len(data) < total {
			c.need = int32(total)
			return data
		}
		c.need = 0
		payload := data[hl:total]
		data = data[total:]
		unmask(payload, h.mask)
		switch h.op {
		case opText, opBinary:
			if c.frag != nil {
				c.fail(BadFrame, "new message inside a fragmented one")
				return nil
			}
			if !h.fin {
				c.frag = &fragment{b: append([]byte(nil), payload...)}
				continue
			}
			c.sess.OnMessage(payload)
		case opContinuation:
			if c.frag == nil {
				c.fail(BadFrame, "continuation frame without a message")
				return nil
			}
			c.frag.b = append(c.frag.b, payload...)
			if h.fin {
				msg := c.frag.b
				c.frag = nil
				c.sess.OnMessage(msg)
			}
		case opPing:
			c.queueControl(itemPong, append([]byte(nil), payload...))
		case opPong:
		case opClose:
			code := uint16(1000)
			if len(payload) >= 2 {
				code = binary.BigEndian.Uint16(payload)
			}
			c.closeByPeer(code)
			return nil
		}
	}
	return nil
}

// fail ends the connection for a transport-level reason, with the
// session's goodbye.
func (c *Conn) fail(r Reason, detail string) {
	c.mu.Lock()
	var start bool
	if c.state == stateOpen {
		code, msg, reconnect := c.sess.Goodbye(r, detail)
		start = c.CloseLocked(code, detail, msg, reconnect, false)
	}
	c.mu.Unlock()
	if start {
		c.Kick()
	}
}

func (c *Conn) queueControl(kind uint8, body []byte) {
	c.mu.Lock()
	start := c.enqueueLocked(outItem{b: body, kind: kind})
	c.mu.Unlock()
	if start {
		c.Kick()
	}
}

// closeByPeer answers the peer's close frame with one of its own; the socket
// closes once it is written.
func (c *Conn) closeByPeer(code uint16) {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	body := make([]byte, 2)
	binary.BigEndian.PutUint16(body, code)
	c.queue = append(c.queue, outItem{b: body, kind: itemClose})
	c.state = stateClosing
	c.cleanClose = true
	c.closeBy = time.Now().Add(CloseGrace).UnixNano()
	start := c.wantFlushLocked()
	c.mu.Unlock()
	if start {
		c.Kick()
	}
}

// flush writes what a short write left, then everything queued, as few
// frames as possible in one write.
func (c *Conn) flush() {
	if len(c.pendingOut) > 0 {
		n, err := c.writeRaw(c.pendingOut)
		c.t.Counters.BytesOut.Add(int64(n))
		if err != nil {
			c.destroy(true)
			return
		}
		if n < len(c.pendingOut) {
			c.pendingOut = c.pendingOut[n:]
			c.setPendingLen(len(c.pendingOut))
			return // the poller says when to go on
		}
		c.pendingOut = nil
		c.setPendingLen(0)
	}
	c.mu.Lock()
	items := c.queue
	c.queue, c.spare, c.queued = c.spare, nil, 0
	state := c.state
	if len(items) > 0 && c.t.pacer != nil {
		c.lastFlush = time.Now().UnixNano()
	}
	jobs := state == stateOpen && c.sess.WaitingLocked()
	c.mu.Unlock()
	if len(items) == 0 {
		if state == stateClosing {
			c.destroy(false)
		} else if jobs {
			c.sess.Room()
		}
		return
	}
	bp := writeBufs.Get().(*[]byte)
	buf, sawClose := c.appendFrames((*bp)[:0], items)
	n, err := c.writeRaw(buf)
	c.t.Counters.BytesOut.Add(int64(n))
	if err == nil && n < len(buf) {
		c.pendingOut = append([]byte(nil), buf[n:]...)
	}
	if cap(buf) <= 4*writeBufSize {
		*bp = buf[:0]
		writeBufs.Put(bp)
	}
	clear(items)
	c.mu.Lock()
	c.pendingLen = len(c.pendingOut)
	if c.spare == nil && cap(items) >= 8 && cap(items) <= 64 { // idle connections keep none
		c.spare = items[:0]
	}
	jobs = c.state == stateOpen && c.sess.WaitingLocked()
	c.mu.Unlock()
	if err != nil {
		c.destroy(true)
		return
	}
	if sawClose && len(c.pendingOut) == 0 {
		c.destroy(!c.cleanClose)
		return
	}
	if jobs {
		// Replies waiting for room take their next step now that the
		// socket took this write.
		c.sess.Room()
	}
}

func (c *Conn) setPendingLen(n int) {
	c.mu.Lock()
	c.pendingLen = n
	c.mu.Unlock()
}

// appendFrames encodes queued items as WebSocket frames: runs of messages
// become one data frame each (up to maxBatch bytes), control items their
// own frames.
func (c *Conn) appendFrames(buf []byte, items []outItem) ([]byte, bool) {
	if c.framing == Framed {
		return appendFramed(buf, items, c.sess.(Framer))
	}
	op := byte(opText)
	if c.framing == BinaryConcat || c.framing == Binary {
		op = opBinary
	}
	var sep []byte
	if c.framing == TextLines {
		sep = newline
	}
	batch := c.framing == TextLines || c.framing == BinaryConcat
	sawClose := false
	for i := 0; i < len(items); {
		switch items[i].kind {
		case itemRaw:
			buf = append(buf, items[i].b...)
			i++
			continue
		case itemClose, itemPong:
			cop := byte(opPong)
			if items[i].kind == itemClose {
				cop, sawClose = opClose, true
			}
			buf = appendFrameHeader(buf, cop, len(items[i].b))
			buf = append(buf, items[i].b...)
			i++
			if sawClose {
				return buf, true // nothing may follow a close frame
			}
			continue
		}
		j, size := i, 0
		for j < len(items) && items[j].kind == itemMsg {
			add := len(items[j].b)
			if j > i {
				add += len(sep)
			}
			if j > i && (!batch || size+add > maxBatch) {
				break
			}
			size += add
			j++
		}
		buf = appendFrameHeader(buf, op, size)
		for k := i; k < j; k++ {
			if k > i {
				buf = append(buf, sep...)
			}
			buf = append(buf, items[k].b...)
		}
		c.t.Counters.FramesOut.Add(1)
		i = j
	}
	return buf, sawClose
}

// appendFramed is appendFrames for a Framed connection.
func appendFramed(buf []byte, items []outItem, f Framer) ([]byte, bool) {
	for _, it := range items {
		end := false
		switch it.kind {
		case itemRaw:
			buf = append(buf, it.b...)
		case itemMsg:
			buf, end = f.Append(buf, it.b)
		case itemClose:
			buf, end = f.End(buf), true
		}
		if end {
			return buf, true
		}
	}
	return buf, false
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// readHandshake reads a raw connection's HTTP request head. A WebSocket
// upgrade is answered on the connection itself; any other request moves the
// socket to net/http, which serves the API.
func (c *Conn) readHandshake() {
	pooled := readBufs.Get().(*[]byte)
	defer readBufs.Put(pooled)
	buf := *pooled
	n0 := copy(buf, c.partial)
	n, err := c.readRaw(buf[n0:])
	if err != nil && err != errWouldBlock {
		c.destroy(true)
		return
	}
	if n == len(buf)-n0 || (n > 0 && c.hangup) {
		c.readAgain()
	}
	data := buf[:n0+n]
	i := bytes.Index(data, []byte("\r\n\r\n"))
	if i < 0 {
		if len(data) >= maxHeaderBytes {
			c.refuse([]byte("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
			return
		}
		c.partial = append(c.partial[:0], data...)
		return
	}
	head, rest := data[:i+4], data[i+4:]
	if !c.t.upgradePath(head) {
		c.toHTTP(append(append([]byte(nil), head...), rest...))
		return
	}
	blen, err := contentLength(head)
	switch {
	case err != nil:
		c.refuse([]byte("HTTP/1.1 " + err.Error() + "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		return
	case blen > len(buf)-len(head):
		c.refuse([]byte("HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		return
	case len(rest) < blen:
		c.partial = append(c.partial[:0], data...) // the body is on its way
		return
	}
	c.partial, rest = rest[:blen], rest[blen:] // RequestBody
	var resp bytes.Buffer
	sess, err := c.t.handler.Upgrade(c, head, &resp)
	c.partial = nil
	if err != nil {
		c.refuse(resp.Bytes())
		return
	}
	c.mu.Lock()
	c.sess = sess // under the lock: Session, check and destroy read it from other goroutines
	c.mu.Unlock()
	c.partial = nil
	c.handshaking.Store(false)
	c.t.Counters.Accepted.Add(1)
	c.queueControl(itemRaw, resp.Bytes())
	if st, ok := sess.(Starter); ok {
		st.Started()
	}
	if len(rest) > 0 {
		c.partial = c.processFrames(append([]byte(nil), rest...))
		if len(c.partial) > 0 {
			c.partial = append([]byte(nil), c.partial...)
		}
	}
}

// refuse sends an HTTP error response and closes once it is written.
func (c *Conn) refuse(resp []byte) {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	c.queue = append(c.queue, outItem{b: resp, kind: itemRaw})
	c.state = stateClosing
	c.closeBy = time.Now().Add(time.Second).UnixNano()
	start := c.wantFlushLocked()
	c.mu.Unlock()
	if start {
		c.Kick()
	}
	c.partial = nil
}

// toHTTP hands the socket to net/http with the bytes already read.
func (c *Conn) toHTTP(replay []byte) {
	t := c.t
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	c.state = stateClosed // nothing else may touch the descriptor now
	c.mu.Unlock()
	t.reg.remove(c.slot, c)
	_ = t.poller.Remove(c.fd)
	nc, err := fdConn(c.fd) // closes c.fd, keeps a duplicate
	if err != nil {
		t.log.Warn("cannot hand connection to the HTTP server", "err", err)
		return
	}
	c.partial = nil
	if !t.httpLn.push(&prefixConn{Conn: nc, prefix: replay}) {
		_ = nc.Close()
	}
}
