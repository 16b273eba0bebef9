package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

const maxHeaderBytes = 16 << 10

var headerBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

var errHeaderTooLarge = errors.New("request header too large")

// Handshake serves a connection accepted by a portable accept loop: it
// reads the HTTP request head and either upgrades the connection (a path
// the Handler claims) or hands it to the HTTP listener. Run it on a
// goroutine of its own.
func (t *Transport) Handshake(nc net.Conn) {
	_ = nc.SetDeadline(time.Now().Add(HandshakeTimeout))
	bp := headerBufs.Get().(*[]byte)
	head, rest, err := readHead(nc, *bp)
	if err != nil {
		headerBufs.Put(bp)
		if errors.Is(err, errHeaderTooLarge) {
			_, _ = io.WriteString(nc, "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		}
		_ = nc.Close()
		return
	}
	if !t.upgradePath(head) {
		// Replay what was read to net/http.
		replay := append([]byte(nil), head...)
		replay = append(replay, rest...)
		headerBufs.Put(bp)
		_ = nc.SetDeadline(time.Time{})
		if !t.httpLn.push(&prefixConn{Conn: nc, prefix: replay}) {
			_ = nc.Close()
		}
		return
	}
	n, err := contentLength(head)
	switch {
	case err != nil:
		_, _ = io.WriteString(nc, "HTTP/1.1 "+err.Error()+"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	case n > readBufSize-len(head):
		_, _ = io.WriteString(nc, "HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	}
	if err != nil || n > readBufSize-len(head) {
		headerBufs.Put(bp)
		_ = nc.Close()
		return
	}
	var body []byte
	if n > 0 {
		body = make([]byte, n)
		m := copy(body, rest)
		rest = rest[m:]
		if _, err := io.ReadFull(nc, body[m:]); err != nil {
			headerBufs.Put(bp)
			_ = nc.Close()
			return
		}
	}
	extra := append([]byte(nil), rest...)
	c := t.startPortableConn(nc, body) // RequestBody
	sess, err := t.handler.Upgrade(c, head, nc)
	c.partial = extra
	headerBufs.Put(bp)
	if err != nil {
		_ = nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	c.sess = sess // before the registry publishes c
	t.reg.add(c)
	t.Counters.Accepted.Add(1)
	if st, ok := sess.(Starter); ok {
		st.Started()
	}
	c.startPortable()
}

// readHead reads until the blank line ending an HTTP request head. rest is
// whatever arrived after it.
func readHead(nc net.Conn, buf []byte) (head, rest []byte, err error) {
	n := 0
	for {
		if n == len(buf) {
			if len(buf) >= maxHeaderBytes {
				return nil, nil, errHeaderTooLarge
			}
			buf = append(buf, make([]byte, len(buf))...)
		}
		m, err := nc.Read(buf[n:])
		n += m
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
			return buf[:i+4], buf[i+4 : n], nil
		}
		if err != nil {
			return nil, nil, err
		}
	}
}

// contentLength returns the length of the body a request head announces (0
// for none). An error is the status line to answer: a body of unknown
// length, or a length that does not parse.
func contentLength(head []byte) (int, error) {
	n := -1
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		k = bytes.TrimSpace(k)
		switch {
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			return 0, errors.New("411 Length Required")
		case bytes.EqualFold(k, []byte("Content-Length")):
			m, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil || m < 0 || n >= 0 && m != n {
				return 0, errors.New("400 Bad Request")
			}
			n = m
		}
	}
	return max(n, 0), nil
}

// upgradePath reports whether the request head asks for a WebSocket
// endpoint of the Handler's.
func (t *Transport) upgradePath(head []byte) bool {
	return t.handler.UpgradePath(RequestPath(head))
}

// RequestPath returns the path of a request head's target, without the
// query.
func RequestPath(head []byte) string {
	line, _, _ := bytes.Cut(head, []byte("\r\n"))
	_, target, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return ""
	}
	target, _, _ = bytes.Cut(target, []byte(" "))
	path, _, _ := bytes.Cut(target, []byte("?"))
	return string(path)
}

// prefixConn replays bytes already read from a connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// chanListener feeds connections that turned out to be plain HTTP to
// net/http.
type chanListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// Adopt serves a connection that net/http has been serving (a keep-alive
// connection) from its next request on, as if it had just been accepted:
// replay is that request, head and all, and whatever was read after it.
// A browser reuses an idle connection for an EventSource or a fetch, so an
// endpoint the transport holds may be asked for on a connection that went
// to net/http first.
func (t *Transport) Adopt(nc net.Conn, replay []byte) {
	if pc, ok := nc.(*prefixConn); ok {
		replay = append(replay, pc.prefix...)
		nc = pc.Conn
	}
	if len(replay) > maxHeaderBytes {
		_, _ = io.WriteString(nc, "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		_ = nc.Close()
		return
	}
	if t.poller != nil {
		if fd, err := dupFd(nc); err == nil {
			_ = nc.Close()
			t.startRawWith(fd, replay)
			return
		}
	}
	go t.Handshake(&prefixConn{Conn: nc, prefix: replay})
}
