package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/huddle-rt/huddle/protocol"
)

// Action Cable subprotocols.
const (
	cableExtJSON = "actioncable-v1-ext-json"
	cableJSON    = "actioncable-v1-json"
)

// cableAdapter speaks Action Cable over WebSocket, as anycable-go and
// Huddle's /cable serve it, by default on the "$pubsub" channel (public
// streams: identifier {"channel":"$pubsub","stream_name":S}, no RPC
// backend). Connections are not authenticated (the server must accept
// anonymous clients: anycable-go --public or --noauth).
//
// With AdapterConfig.Channel it subscribes to that application channel
// instead ({"channel":C,"stream":S}), which the server hands to its RPC
// backend, and with AdapterConfig.Identity each connection names its user
// to that backend (a bench_user cookie or query parameter; RPCBackend
// reads either).
//
// Wire format of the bench's opaque payloads (stamps), base64 in JSON:
//
//   - Publish goes through HTTP, not the socket: POST <broadcast URL>
//     {"stream":S,"data":"\"<base64>\""} with "Authorization: Bearer <key>"
//     when a key is set (what anycable-go's --broadcast_key checks), on one
//     pipelined keep-alive connection per adapter. Subscribers receive
//     {"identifier":I,"message":"<base64>"} (plus stream_id, epoch and
//     offset in the extended protocol when the server keeps history).
//   - Whisper sends {"command":"whisper","identifier":I,"data":{"event":EV,"b":"<base64>"}};
//     the others receive {"identifier":I,"message":{"event":EV,"b":...}},
//     which becomes EventWhisper (a message that is an object with "event").
//   - Join sends {"command":"join","identifier":I,"presence":{"id":USER,"info":{"b":"<base64>"}}},
//     Leave {"command":"leave","identifier":I}; subscribers receive
//     {"type":"presence","identifier":I,"message":{"type":"join"|"leave","id":USER,"info":...}}
//     (anycable-go needs a broker for presence: --broker=memory).
//
// Pings ({"type":"ping"}) are answered with {"command":"pong"} in the
// extended protocol, as AnyCable's clients do, and ignored in the plain one,
// as Rails' client does. Recovery (SubOptions.Recover) is not supported.
type cableAdapter struct {
	url     string
	proto   string // the subprotocol asked for
	ext     bool   // proto is the extended one
	bc      *broadcaster
	channel string // an application channel instead of $pubsub (AdapterConfig.Channel)
	ident   string // how a connection says who it is (AdapterConfig.Identity)
}

// Ways a cable connection tells the RPC backend who it is
// (AdapterConfig.Identity), both named BenchUserParam.
const (
	identityCookie = "cookie"
	identityQuery  = "query"
)

var _ Adapter = (*cableAdapter)(nil)

// newCableAdapter makes the "cable" adapter. cfg.Codec picks the
// subprotocol: "ext-json" (actioncable-v1-ext-json, the default) or "json"
// (actioncable-v1-json). cfg.BroadcastURL defaults to the WebSocket URL's
// origin + /_broadcast.
func newCableAdapter(cfg AdapterConfig) (Adapter, error) {
	a := &cableAdapter{url: cfg.URL, channel: cfg.Channel, ident: cfg.Identity}
	switch a.ident {
	case "", identityCookie, identityQuery:
	default:
		return nil, fmt.Errorf("bench: cable adapter: unknown identity %q (cookie, query or none)", cfg.Identity)
	}
	switch cfg.Codec {
	case "", "ext-json", cableExtJSON:
		a.proto, a.ext = cableExtJSON, true
	case "json", cableJSON:
		a.proto = cableJSON
	default:
		return nil, fmt.Errorf("bench: cable adapter: unknown codec %q (ext-json or json)", cfg.Codec)
	}
	if a.url == "" {
		return nil, errors.New("bench: cable adapter: no URL")
	}
	bu := cfg.BroadcastURL
	if bu == "" {
		var err error
		if bu, err = defaultBroadcastURL(a.url); err != nil {
			return nil, fmt.Errorf("bench: cable adapter: %w", err)
		}
	}
	bc, err := newBroadcaster(bu, cfg.BroadcastKey)
	if err != nil {
		return nil, fmt.Errorf("bench: cable adapter: %w", err)
	}
	a.bc = bc
	return a, nil
}

// defaultBroadcastURL is the HTTP broadcast endpoint beside a WebSocket
// URL: same host and port, path /_broadcast.
func defaultBroadcastURL(wsURL string) (string, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "http"
	case "wss", "https":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("URL %q: want ws:// or wss://", wsURL)
	}
	u.Path, u.RawPath, u.RawQuery, u.Fragment = "/_broadcast", "", "", ""
	return u.String(), nil
}

func (a *cableAdapter) Name() string { return "cable" }

// cableConn is one Action Cable connection. Its WebSocket transport is a
// huddleConn with onFrame set: the process's reactor reads it and calls
// frame with each message.
type cableConn struct {
	a    *cableAdapter
	t    *huddleConn
	user string

	subs    atomic.Pointer[[]*cableSub] // copied on write under reqMu
	reqMu   sync.Mutex                  // one subscribe at a time
	pending atomic.Pointer[cableSub]    // the subscription awaiting its answer
	answers chan bool                   // confirm_subscription (true) or reject_subscription (false) of pending

	welcome  chan struct{} // closed by the welcome message
	welcomed bool          // reactor only
	scratch  []byte        // reactor only: unescaped strings
	b64      []byte        // reactor only: decoded payloads
	reason   atomic.Pointer[string]
}

// cableSub is one subscription: to a $pubsub stream, or to an
// application channel that follows one stream.
type cableSub struct {
	stream  string
	streamB []byte
	ident   string // the identifier: {"channel":"$pubsub","stream_name":stream} or {"channel":C,"stream":stream}
	identQ  []byte // ident escaped for the inside of a JSON string
}

func newCableSub(stream string) *cableSub {
	ident := string(appendJSONString([]byte(`{"channel":"$pubsub","stream_name":`), stream)) + "}"
	return &cableSub{stream: stream, streamB: []byte(stream), ident: ident, identQ: appendJSONEscaped(nil, ident)}
}

// newChannelSub is a subscription to application channel ch, whose
// backend is asked to stream stream.
func newChannelSub(ch, stream string) *cableSub {
	b := appendJSONString([]byte(`{"channel":`), ch)
	b = appendJSONString(append(b, `,"stream":`...), stream)
	ident := string(append(b, '}'))
	return &cableSub{stream: stream, streamB: []byte(stream), ident: ident, identQ: appendJSONEscaped(nil, ident)}
}

// newSub is the adapter's subscription to stream.
func (a *cableAdapter) newSub(stream string) *cableSub {
	if a.channel != "" {
		return newChannelSub(a.channel, stream)
	}
	return newCableSub(stream)
}

// dialURL is the URL a connection of user dials, with its identity when
// it goes in the query.
func (a *cableAdapter) dialURL(user string) string {
	if a.ident != identityQuery {
		return a.url
	}
	sep := "?"
	if strings.Contains(a.url, "?") {
		sep = "&"
	}
	return a.url + sep + BenchUserParam + "=" + url.QueryEscape(user)
}

var _ Conn = (*cableConn)(nil)

// Dial connects, asking for the adapter's subprotocol, and waits for the
// server's welcome.
func (a *cableAdapter) Dial(ctx context.Context, o DialOptions, h Handler) (Conn, error) {
	d := ws.Dialer{Protocols: []string{a.proto}}
	if a.ident == identityCookie {
		d.Header = ws.HandshakeHeaderString("Cookie: " + BenchUserParam + "=" + url.QueryEscape(o.User) + "\r\n")
	}
	nd := net.Dialer{Control: socketOptions(o)}
	if o.Local != nil {
		nd.LocalAddr = &net.TCPAddr{IP: o.Local}
	}
	d.NetDial = nd.DialContext
	nc, br, hs, err := d.Dial(ctx, a.dialURL(o.User))
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	if hs.Protocol != a.proto {
		nc.Close()
		return nil, fmt.Errorf("dial: the server chose subprotocol %q, not %q", hs.Protocol, a.proto)
	}
	r, err := clientReactor()
	if err != nil {
		nc.Close()
		return nil, err
	}
	fd, err := detach(nc)
	if err != nil {
		return nil, err
	}
	c := &cableConn{a: a, user: o.User, answers: make(chan bool, 1), welcome: make(chan struct{})}
	c.t = &huddleConn{fd: fd, r: r, codec: protocol.JSON, h: h, done: make(chan struct{}), mask: rand.Uint64() | 1, onFrame: c.frame}
	if br != nil && br.Buffered() > 0 {
		// Sent right after the 101 (the welcome, usually): handle it now,
		// before the reactor knows the socket, as nothing more may come
		// for a while to make it readable.
		b, _ := br.Peek(br.Buffered())
		used, err := c.t.frames(b, time.Now().UnixNano())
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("welcome: %w", err)
		}
		c.t.pend = append(c.t.pend, b[used:]...)
	}
	if err := r.add(c.t); err != nil {
		unix.Close(fd)
		return nil, err
	}
	select {
	case <-c.welcome:
		return c, nil
	case <-c.t.done:
		return nil, fmt.Errorf("welcome: %w", c.closedErr())
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("welcome: %w", ctx.Err())
	}
}

// closedErr says why the connection ended.
func (c *cableConn) closedErr() error {
	msg := "connection closed"
	if code := c.t.closeCode.Load(); code != 0 {
		msg = fmt.Sprintf("closed with %d", code)
	}
	if r := c.reason.Load(); r != nil {
		msg += " (disconnect: " + *r + ")"
	}
	return errors.New(msg)
}

// sub returns the subscription to stream, or nil.
func (c *cableConn) sub(stream string) *cableSub {
	if p := c.subs.Load(); p != nil {
		for _, s := range *p {
			if s.stream == stream {
				return s
			}
		}
	}
	return nil
}

// setSubs replaces the subscriptions: old without drop, plus add. Lock
// c.reqMu must be held.
func (c *cableConn) setSubs(add, drop *cableSub) {
	var next []*cableSub
	if p := c.subs.Load(); p != nil {
		for _, s := range *p {
			if s != drop {
				next = append(next, s)
			}
		}
	}
	if add != nil {
		next = append(next, add)
	}
	c.subs.Store(&next)
}

// Subscribe subscribes to the $pubsub stream and waits for
// confirm_subscription. With o.Join it also enters the stream's presence
// (the subscribe command's "presence" field, which anycable-go applies
// once subscribed). o.Presence needs nothing: every subscriber of a
// $pubsub stream gets its presence events.
func (c *cableConn) Subscribe(ctx context.Context, stream string, o SubOptions) error {
	if o.Recover != nil {
		return ErrUnsupported
	}
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	if c.sub(stream) != nil {
		return nil
	}
	s := c.a.newSub(stream)
	c.setSubs(s, nil) // before the command: messages may follow the confirmation at once
	c.pending.Store(s)
	defer c.pending.Store(nil)
	select {
	case <-c.answers: // a stale answer
	default:
	}
	err := c.write(func(b []byte) []byte {
		b = append(b, `{"command":"subscribe","identifier":"`...)
		b = append(b, s.identQ...)
		b = append(b, '"')
		if o.Join != nil {
			b = c.appendPresence(append(b, `,"presence":`...), o.Join)
		}
		return append(b, '}')
	}, writeTimeout)
	if err != nil {
		c.setSubs(nil, s)
		return err
	}
	select {
	case ok := <-c.answers:
		if !ok {
			c.setSubs(nil, s)
			return fmt.Errorf("subscription to %q rejected", stream)
		}
		return nil
	case <-c.t.done:
		return c.closedErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Publish broadcasts data to stream through the adapter's HTTP broadcast
// endpoint (Action Cable clients cannot publish). It does not wait for the
// response; a failed one makes the later calls fail.
func (c *cableConn) Publish(stream string, data []byte) error {
	return c.a.bc.publish(stream, data)
}

// Whisper sends data to the stream's other subscribers under event ev.
func (c *cableConn) Whisper(stream, ev string, data []byte) error {
	return c.write(func(b []byte) []byte {
		b = c.appendCommand(b, "whisper", stream)
		b = append(b, `,"data":{"event":`...)
		b = appendJSONString(b, ev)
		b = append(b, `,"b":"`...)
		b = base64.StdEncoding.AppendEncode(b, data)
		return append(b, `"}}`...)
	}, writeTimeout)
}

// Join enters the stream's presence as the connection's user with state.
func (c *cableConn) Join(stream string, state []byte) error {
	return c.write(func(b []byte) []byte {
		b = c.appendCommand(b, "join", stream)
		b = c.appendPresence(append(b, `,"presence":`...), state)
		return append(b, '}')
	}, writeTimeout)
}

// Leave leaves the stream's presence.
func (c *cableConn) Leave(stream string) error {
	return c.write(func(b []byte) []byte {
		return append(c.appendCommand(b, "leave", stream), '}')
	}, writeTimeout)
}

// appendCommand appends the start of a command on stream's subscription:
// {"command":cmd,"identifier":I (the object left open).
func (c *cableConn) appendCommand(b []byte, cmd, stream string) []byte {
	b = append(b, `{"command":"`...)
	b = append(b, cmd...)
	b = append(b, `","identifier":"`...)
	if s := c.sub(stream); s != nil {
		b = append(b, s.identQ...)
	} else {
		b = append(b, c.a.newSub(stream).identQ...)
	}
	return append(b, '"')
}

// appendPresence appends a presence record: {"id":user,"info":{"b":"<base64 state>"}}.
func (c *cableConn) appendPresence(b, state []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, c.user)
	b = append(b, `,"info":{"b":"`...)
	b = base64.StdEncoding.AppendEncode(b, state)
	return append(b, `"}}`...)
}

// write sends the message enc appends as one text frame, waiting for room
// in the socket at most timeout.
func (c *cableConn) write(enc func([]byte) []byte, timeout time.Duration) error {
	t := c.t
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return t.writeFrameLocked(enc(t.frameStartLocked()), timeout)
}

func (c *cableConn) Pause(paused bool)     { c.t.Pause(paused) }
func (c *cableConn) Close() error          { return c.t.Close() }
func (c *cableConn) Done() <-chan struct{} { return c.t.done }

// cableMsg is a server message's top-level fields, raw (see jsonObject).
type cableMsg struct {
	typ       []byte // "" for a channel message
	ident     []byte // identifier's content, escapes intact
	message   []byte // the message value, raw
	streamID  []byte // extended protocol: the stream of a message with a position
	epoch     []byte
	offset    uint64
	reason    []byte
	hasIdent  bool
	hasOffset bool
}

// parseCableMsg reads one server message.
func parseCableMsg(b []byte) (m cableMsg, ok bool) {
	o, ok := newJSONObject(b)
	if !ok {
		return m, false
	}
	for {
		k, v, ok := o.next()
		if !ok {
			break
		}
		switch string(k) {
		case "type":
			m.typ, _, _ = jsonStringValue(v)
		case "identifier":
			m.ident, _, m.hasIdent = jsonStringValue(v)
		case "message":
			m.message = v
		case "stream_id":
			m.streamID, _, _ = jsonStringValue(v)
		case "epoch":
			m.epoch, _, _ = jsonStringValue(v)
		case "offset":
			m.offset, m.hasOffset = jsonUint(v)
		case "reason":
			m.reason, _, _ = jsonStringValue(v)
		}
	}
	return m, !o.bad
}

// frame handles one server message; it runs on the reactor. Malformed or
// unknown messages are ignored.
func (c *cableConn) frame(b []byte, now int64, ev *Event) error {
	m, ok := parseCableMsg(b)
	if !ok {
		return nil
	}
	switch string(m.typ) {
	case "": // a channel message: a publication or a whisper
		if m.message == nil {
			return nil
		}
		c.message(&m, now, ev)
	case "ping":
		if c.a.ext {
			_ = c.write(func(b []byte) []byte { return append(b, `{"command":"pong"}`...) }, replyTimeout)
		}
	case "welcome":
		if !c.welcomed {
			c.welcomed = true
			close(c.welcome)
		}
	case "confirm_subscription", "reject_subscription":
		s := c.lookup(&m)
		confirmed := string(m.typ) == "confirm_subscription"
		if s != nil && c.pending.Load() == s {
			select {
			case c.answers <- confirmed:
			default:
			}
		}
		if confirmed && s != nil {
			*ev = Event{Kind: EventSubscribed, At: now, Stream: s.streamB}
			c.t.h(ev)
		}
	case "presence":
		c.presence(&m, now, ev)
	case "disconnect":
		r := string(m.reason)
		c.reason.Store(&r)
	}
	return nil
}

// lookup finds the subscription a message's identifier names.
func (c *cableConn) lookup(m *cableMsg) *cableSub {
	p := c.subs.Load()
	if p == nil || !m.hasIdent {
		return nil
	}
	for _, s := range *p {
		if bytes.Equal(m.ident, s.identQ) {
			return s
		}
	}
	// Escaped differently (\/, \u0024...): compare the text.
	var ok bool
	c.scratch, ok = jsonUnescape(c.scratch[:0], m.ident)
	if !ok {
		return nil
	}
	for _, s := range *p {
		if string(c.scratch) == s.ident {
			return s
		}
	}
	return nil
}

// stream is the stream a message is on.
func (c *cableConn) stream(m *cableMsg) []byte {
	if s := c.lookup(m); s != nil {
		return s.streamB
	}
	return m.streamID
}

// message delivers a channel message: a string is a publication's base64
// payload; an object with "event" is a whisper ({"event","b"}).
func (c *cableConn) message(m *cableMsg, now int64, ev *Event) {
	v := m.message
	switch {
	case len(v) > 0 && v[0] == '"':
		data, ok := c.unwrap(v)
		if !ok {
			return
		}
		*ev = Event{Kind: EventPub, At: now, Stream: c.stream(m), Data: data, Offset: m.offset, Epoch: m.epoch}
		c.t.h(ev)
	case len(v) > 0 && v[0] == '{':
		o, _ := newJSONObject(v)
		var name, b []byte
		var hasName bool
		for {
			k, fv, ok := o.next()
			if !ok {
				break
			}
			switch string(k) {
			case "event":
				name, _, hasName = jsonStringValue(fv)
			case "b":
				b = fv
			}
		}
		data, ok := c.unwrap(b)
		if !ok {
			return
		}
		*ev = Event{Kind: EventPub, At: now, Stream: c.stream(m), Data: data, Offset: m.offset, Epoch: m.epoch}
		if hasName {
			ev.Kind, ev.Name = EventWhisper, name
		}
		c.t.h(ev)
	}
}

// presence delivers a presence event: {"type":"join"|"leave","id":USER,"info":{"b":...}}.
func (c *cableConn) presence(m *cableMsg, now int64, ev *Event) {
	o, ok := newJSONObject(m.message)
	if !ok {
		return
	}
	var typ, id, info []byte
	for {
		k, v, ok := o.next()
		if !ok {
			break
		}
		switch string(k) {
		case "type":
			typ, _, _ = jsonStringValue(v)
		case "id":
			id, _, _ = jsonStringValue(v)
		case "info":
			info = v
		}
	}
	switch string(typ) {
	case "join":
		*ev = Event{Kind: EventJoin, At: now, Stream: c.stream(m), User: id}
		if in, ok := newJSONObject(info); ok {
			for {
				k, v, ok := in.next()
				if !ok {
					break
				}
				if string(k) == "b" {
					ev.Data, _ = c.unwrap(v)
				}
			}
		}
		c.t.h(ev)
	case "leave":
		*ev = Event{Kind: EventLeave, At: now, Stream: c.stream(m), User: id}
		c.t.h(ev)
	}
}

// unwrap decodes a raw JSON string value holding base64 into c.b64.
func (c *cableConn) unwrap(v []byte) ([]byte, bool) {
	s, esc, ok := jsonStringValue(v)
	if !ok {
		return nil, false
	}
	if esc { // "\/" and the like
		if c.scratch, ok = jsonUnescape(c.scratch[:0], s); !ok {
			return nil, false
		}
		s = c.scratch
	}
	n := base64.StdEncoding.DecodedLen(len(s))
	if cap(c.b64) < n {
		c.b64 = make([]byte, n)
	}
	k, err := base64.StdEncoding.Decode(c.b64[:n], s)
	if err != nil {
		return nil, false
	}
	return c.b64[:k], true
}

// broadcaster publishes through an HTTP broadcast endpoint (anycable-go's
// /_broadcast) on one keep-alive connection, pipelined: a publish writes
// its request and returns; a goroutine reads the responses. One connection
// keeps the publications of a process in order. A response other than 2xx
// makes every later publish fail (a wrong key would otherwise only show as
// missing deliveries).
type broadcaster struct {
	addr   string
	target string // the request line's path
	head   []byte // request line and headers up to Content-Length's value

	mu   sync.Mutex
	nc   net.Conn
	body []byte
	req  []byte

	failed atomic.Pointer[string]
}

func newBroadcaster(rawURL, key string) (*broadcaster, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("broadcast URL: %w", err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("broadcast URL %q: only http:// is supported", rawURL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	b := &broadcaster{addr: host, target: u.RequestURI()}
	h := "POST " + b.target + " HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: application/json\r\nUser-Agent: huddle-bench\r\n"
	if key != "" {
		h += "Authorization: Bearer " + key + "\r\n"
	}
	b.head = []byte(h + "Content-Length: ")
	return b, nil
}

// publish sends {"stream":stream,"data":"\"<base64 data>\""}.
func (b *broadcaster) publish(stream string, data []byte) error {
	if f := b.failed.Load(); f != nil {
		return errors.New(*f)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	body := append(b.body[:0], `{"stream":`...)
	body = appendJSONString(body, stream)
	body = append(body, `,"data":"\"`...)
	body = base64.StdEncoding.AppendEncode(body, data)
	body = append(body, `\""}`...)
	b.body = body
	req := append(b.req[:0], b.head...)
	req = strconv.AppendInt(req, int64(len(body)), 10)
	req = append(req, "\r\n\r\n"...)
	req = append(req, body...)
	b.req = req
	var err error
	for try := 0; try < 2; try++ { // once more on a fresh connection: the server may have closed an idle one
		if b.nc == nil {
			if err = b.dialLocked(); err != nil {
				continue
			}
		}
		if _, err = b.nc.Write(req); err == nil {
			return nil
		}
		b.nc.Close()
		b.nc = nil
	}
	return fmt.Errorf("broadcast: %w", err)
}

func (b *broadcaster) dialLocked() error {
	nc, err := net.DialTimeout("tcp", b.addr, 10*time.Second)
	if err != nil {
		return err
	}
	b.nc = nc
	go b.responses(nc)
	return nil
}

// responses reads nc's responses until it ends.
func (b *broadcaster) responses(nc net.Conn) {
	br := bufio.NewReader(nc)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			msg := fmt.Sprintf("broadcast: POST %s answered %s (is the broadcast key right?)", b.target, resp.Status)
			b.failed.CompareAndSwap(nil, &msg)
		}
		if resp.Close {
			break
		}
	}
	nc.Close()
	b.mu.Lock()
	if b.nc == nc {
		b.nc = nil
	}
	b.mu.Unlock()
}
