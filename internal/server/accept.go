package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
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

// originAllowed reports whether a page at origin (an Origin header's value)
// may open a WebSocket to this server, reached as host (the request's Host
// header), under allowed (Config.AllowedOrigins):
//
//   - "*" in allowed admits every origin, "null" and malformed ones too;
//   - the server's own origin (same host and port as Host) is always
//     admitted, so pages the server serves itself keep working;
//   - with allowed empty, loopback origins (localhost, 127.0.0.0/8, ::1) are
//     admitted as well, for a local app talking to a local server;
//   - otherwise the origin must match an entry: "https://app.example.com"
//     matches that scheme, host and port exactly, and
//     "https://*.example.com" any subdomain (not example.com itself).
//
// Scheme and host compare case-insensitively, and a default port (80 for
// http and ws, 443 for https and wss) is the same as none.
func originAllowed(origin, host string, allowed []string) bool {
	if slices.Contains(allowed, "*") {
		return true
	}
	o, ok := parseOrigin(origin, false)
	if !ok {
		return false
	}
	if hn, hp, ok := splitHost(host); ok && strings.EqualFold(hn, o.host) && defaultPort(o.scheme, hp) == o.port {
		return true
	}
	if len(allowed) == 0 {
		return isLoopbackName(o.host)
	}
	for _, a := range allowed {
		if p, ok := parseOrigin(a, true); ok && p.matches(o) {
			return true
		}
	}
	return false
}

// CheckOriginPattern reports why p cannot be an entry of
// Config.AllowedOrigins, or nil if it can. Entries are "*", or a scheme and
// a host with an optional port, whose host may start with "*." for every
// subdomain: "https://app.example.com", "http://localhost:5173",
// "https://*.example.com". An entry the server cannot parse matches nothing.
func CheckOriginPattern(p string) error {
	if p == "*" {
		return nil
	}
	if _, ok := parseOrigin(p, true); !ok {
		return fmt.Errorf("origin %q: want *, scheme://host[:port] or scheme://*.domain[:port], e.g. https://app.example.com", p)
	}
	return nil
}

// LoopbackHost reports whether hostport, a Host header's value with or
// without a port, names this machine by a loopback name or address:
// localhost, 127.0.0.0/8 or [::1]. DNS names that merely resolve to a
// loopback address do not count, which is the point: a DNS rebinding attack
// makes a foreign name resolve to 127.0.0.1 but cannot change the Host its
// browser sends.
func LoopbackHost(hostport string) bool {
	h, _, ok := splitHost(hostport)
	return ok && isLoopbackName(h)
}

func isLoopbackName(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// webOrigin is a parsed origin or AllowedOrigins entry; scheme and host are
// lower case, host has no IPv6 brackets, port is "" for the scheme's default.
type webOrigin struct {
	scheme, host, port string
	wildcard           bool // host is a suffix such as ".example.com"
}

func (p webOrigin) matches(o webOrigin) bool {
	if p.scheme != o.scheme || p.port != o.port {
		return false
	}
	if p.wildcard {
		return len(o.host) > len(p.host) && strings.HasSuffix(o.host, p.host)
	}
	return p.host == o.host
}

// parseOrigin parses scheme://host[:port], with one trailing slash
// tolerated for entries pasted from an address bar. With pattern set, the
// host may start with "*.".
func parseOrigin(s string, pattern bool) (webOrigin, bool) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || !validScheme(scheme) {
		return webOrigin{}, false
	}
	rest = strings.TrimSuffix(rest, "/")
	if strings.ContainsAny(rest, "/?#@\\ \t") {
		return webOrigin{}, false
	}
	host, port, ok := splitHost(rest)
	if !ok || host == "" {
		return webOrigin{}, false
	}
	o := webOrigin{scheme: strings.ToLower(scheme), host: strings.ToLower(host)}
	o.port = defaultPort(o.scheme, port)
	if pattern {
		if suffix, ok := strings.CutPrefix(o.host, "*"); ok && strings.HasPrefix(suffix, ".") && len(suffix) > 1 {
			o.host, o.wildcard = suffix, true
		}
	}
	if strings.Contains(o.host, "*") {
		return webOrigin{}, false
	}
	return o, true
}

// validScheme checks RFC 3986's ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20 // lower case for letters
		switch {
		case c >= 'a' && c <= 'z':
		case i > 0 && (s[i] >= '0' && s[i] <= '9' || s[i] == '+' || s[i] == '-' || s[i] == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// splitHost splits host[:port] or [ipv6][:port]; the port, when present,
// must be decimal digits. A bare IPv6 address (colons, no brackets) is
// refused, as in a URL.
func splitHost(s string) (host, port string, ok bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false
		}
		host, s = s[1:end], s[end+1:]
		if s == "" {
			return host, "", true
		}
		if s[0] != ':' {
			return "", "", false
		}
		port = s[1:]
	} else {
		var hasPort bool
		host, port, hasPort = strings.Cut(s, ":")
		if hasPort && strings.Contains(port, ":") {
			return "", "", false
		}
		if !hasPort {
			return host, "", true
		}
	}
	if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return "", "", false
	}
	return host, port, true
}

// defaultPort returns "" for the default port of scheme, port otherwise.
func defaultPort(scheme, port string) string {
	switch {
	case port == "80" && (scheme == "http" || scheme == "ws"),
		port == "443" && (scheme == "https" || scheme == "wss"):
		return ""
	}
	return port
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
