package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/protocol"
)

const (
	handshakeTimeout = 10 * time.Second
	maxHeaderBytes   = 16 << 10
	wsPath           = "/ws"
)

var headerBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

var errHeaderTooLarge = errors.New("request header too large")

// handshake reads one HTTP request head from a new connection and either
// upgrades it to a WebSocket (path /ws) or hands it to the HTTP server.
func (s *Server) handshake(nc net.Conn) {
	_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
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
	if !isWebSocketPath(head) {
		// Replay what was read to net/http, which serves the API.
		replay := append([]byte(nil), head...)
		replay = append(replay, rest...)
		headerBufs.Put(bp)
		_ = nc.SetDeadline(time.Time{})
		if !s.httpLn.push(&prefixConn{Conn: nc, prefix: replay}) {
			_ = nc.Close()
		}
		return
	}
	extra := append([]byte(nil), rest...)
	s.upgrade(nc, head, extra)
	headerBufs.Put(bp)
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

func isWebSocketPath(head []byte) bool {
	line, _, _ := bytes.Cut(head, []byte("\r\n"))
	_, target, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return false
	}
	target, _, _ = bytes.Cut(target, []byte(" "))
	path, _, _ := bytes.Cut(target, []byte("?"))
	return string(path) == wsPath || string(path) == wsPath+"/"
}

func (s *Server) upgrade(nc net.Conn, head, extra []byte) {
	codec, token, err := s.upgradeHead(head, nc)
	if err != nil {
		_ = nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	s.startConn(nc, codec, token, extra)
}

// upgradeHead answers a WebSocket upgrade request (head is its request line
// and headers) by writing the response to w. It picks the codec from the
// offered subprotocols and takes a token from ?token= or Authorization. On
// error the refusal (HTTP 400, 403, 503...) has been written.
func (s *Server) upgradeHead(head []byte, w io.Writer) (codec protocol.Codec, token string, err error) {
	codec = protocol.JSON // no subprotocol offered: JSON, for debugging
	var (
		offered     bool
		chosen      bool
		offeredList string
		host        string
		origins     []string
	)
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			if s.draining.Load() {
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusServiceUnavailable), ws.RejectionReason("server is draining"))
			}
			if _, q, ok := bytes.Cut(uri, []byte("?")); ok {
				if v, err := url.ParseQuery(string(q)); err == nil {
					token = v.Get("token")
				}
			}
			return nil
		},
		ProtocolCustom: func(v []byte) (string, bool) {
			offered = true
			offeredList = string(v)
			for _, name := range strings.Split(string(v), ",") {
				if c, ok := protocol.CodecFor(strings.TrimSpace(name)); ok {
					codec, chosen = c, true
					return c.Subprotocol(), true
				}
			}
			return "", true
		},
		OnHost: func(h []byte) error {
			host = string(h)
			return nil
		},
		OnHeader: func(key, value []byte) error {
			// gobwas canonicalizes keys, so "origin" arrives as "Origin".
			switch string(key) {
			case "Authorization":
				if t, ok := auth.BearerToken(string(value)); ok && token == "" {
					token = t
				}
			case "Origin":
				origins = append(origins, string(value))
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			// Browsers always send Origin on a WebSocket upgrade and let
			// any page open one to any host, so this is the only place a
			// page of a foreign site can be told no. Clients that are not
			// browsers send none and are not cross-site requests.
			if len(origins) > 1 || len(origins) == 1 && !originAllowed(origins[0], host, s.cfg.AllowedOrigins) {
				s.log.Debug("websocket upgrade refused: origin not allowed", "origin", strings.Join(origins, ", "), "host", host)
				return nil, ws.RejectConnectionError(
					ws.RejectionStatus(http.StatusForbidden),
					ws.RejectionReason("origin "+strconvQuote(strings.Join(origins, ", "))+" is not allowed (see --allowed-origins)"),
				)
			}
			if offered && !chosen {
				return nil, ws.RejectConnectionError(
					ws.RejectionStatus(http.StatusBadRequest),
					ws.RejectionReason("unsupported subprotocol "+strconvQuote(offeredList)+"; offer "+protocol.SubprotocolMsgpack+" or "+protocol.SubprotocolJSON),
				)
			}
			return nil, nil
		},
	}
	rw := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(head), w}
	if _, err := u.Upgrade(rw); err != nil {
		s.metrics.handshakeFailures.Add(1)
		return codec, "", err
	}
	return codec, token, nil
}

func strconvQuote(s string) string {
	if len(s) > 100 {
		s = s[:100]
	}
	return `"` + strings.ReplaceAll(s, `"`, `'`) + `"`
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
