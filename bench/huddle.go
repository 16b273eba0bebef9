package bench

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/protocol"
)

// huddleAdapter speaks Huddle's protocol v1 (PROTOCOL.md) in msgpack or
// JSON. Tokens are HS256, signed with the configured secret, granting every
// op on every stream.
type huddleAdapter struct {
	url    string
	secret []byte
	codec  protocol.Codec
}

var _ Adapter = (*huddleAdapter)(nil)

func newHuddleAdapter(cfg AdapterConfig) (Adapter, error) {
	a := &huddleAdapter{url: cfg.URL, secret: []byte(cfg.Secret), codec: protocol.Msgpack}
	switch cfg.Codec {
	case "", "msgpack":
	case "json":
		a.codec = protocol.JSON
	default:
		return nil, fmt.Errorf("bench: huddle adapter: unknown codec %q (msgpack or json)", cfg.Codec)
	}
	if a.url == "" {
		return nil, errors.New("bench: huddle adapter: no URL")
	}
	if len(a.secret) == 0 {
		return nil, errors.New("bench: huddle adapter: no secret to sign tokens with")
	}
	return a, nil
}

func (a *huddleAdapter) Name() string { return "huddle" }

var allGrants = map[string][]string{"*": {"sub", "pub", "whisper", "presence", "history"}}

// Timeouts of a connection's requests and writes.
const (
	writeTimeout = 10 * time.Second
	maxFrame     = 64 << 20
)

func (a *huddleAdapter) Dial(ctx context.Context, o DialOptions, h Handler) (Conn, error) {
	tok, err := auth.SignHS256(a.secret, o.User, time.Now().Add(24*time.Hour), nil, allGrants)
	if err != nil {
		return nil, err
	}
	d := ws.Dialer{Protocols: []string{a.codec.Subprotocol()}}
	nd := net.Dialer{Control: socketOptions(o)}
	if o.Local != nil {
		nd.LocalAddr = &net.TCPAddr{IP: o.Local}
	}
	d.NetDial = nd.DialContext
	nc, br, _, err := d.Dial(ctx, a.url)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
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
	c := &huddleConn{
		fd:      fd,
		r:       r,
		codec:   a.codec,
		h:       h,
		done:    make(chan struct{}),
		replies: make(chan reply, 1),
		mask:    rand.Uint64() | 1,
	}
	if br != nil && br.Buffered() > 0 { // sent right after the 101: read with the next bytes
		b, _ := br.Peek(br.Buffered())
		c.pend = append(c.pend, b...)
	}
	if err := r.add(c); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := c.request(ctx, func(id uint64) error {
		return c.sendMsg(&protocol.Connect{ID: id, Token: tok, UA: "huddle-bench"})
	}); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return c, nil
}

// detach takes nc's socket away from the Go runtime's poller for the
// reactor: it returns a duplicate of the descriptor (non-blocking, as the
// two share the open file) and closes nc, which removes the original from
// the runtime's epoll set.
func detach(nc net.Conn) (int, error) {
	defer nc.Close()
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("bench: %T has no descriptor", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("bench: dup: %w", derr)
	}
	return fd, nil
}

// socketOptions sets, before connect, IP_BIND_ADDRESS_NO_PORT when a source
// address is given (the port is then chosen per destination at connect, so
// one 127.0.0.x address is not limited to one ephemeral port range across
// every server) and SO_RCVBUF when asked.
func socketOptions(o DialOptions) func(network, address string, c syscall.RawConn) error {
	if o.Local == nil && o.RecvBuf <= 0 {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if o.Local != nil {
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			}
			if o.RecvBuf > 0 {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, o.RecvBuf)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// huddleConn is one Huddle connection. The process's reactor reads it and
// calls the handler; requests that need a reply (connect, sub) wait for it
// one at a time. Writes go straight to the socket from the caller.
type huddleConn struct {
	fd    int
	r     *reactor
	codec protocol.Codec
	h     Handler

	ids     atomic.Uint64
	reqMu   sync.Mutex    // one request awaiting a reply at a time
	want    atomic.Uint64 // id of the awaited reply
	replies chan reply

	wmu  sync.Mutex // guards the following
	wbuf []byte
	mask uint64 // xorshift state for masking keys
	dead bool   // the reactor closed fd

	closing atomic.Bool // Close was called

	pend      []byte // bytes of a frame not complete yet (reactor only)
	frag      []byte // a fragmented message (reactor only)
	ev        Event  // reactor only
	decoded   []protocol.Decoded
	b64       []byte
	closeCode atomic.Int32
	done      chan struct{}

	// onFrame, when set, handles every data frame in place of Huddle's
	// decoder: the connection is then only the WebSocket transport (the
	// reactor, frames, masked writes) of another protocol (see cable.go).
	onFrame func(frame []byte, now int64, ev *Event) error
	// onBytes, when set, reads the socket's bytes in place of WebSocket
	// frames (a response of server-sent events, see sse.go): it returns
	// how many it used, the rest waiting for more.
	onBytes func(b []byte, now int64) (int, error)
}

type reply struct {
	id   uint64
	code int
	err  string
}

var _ Conn = (*huddleConn)(nil)

// request sends what send writes under a fresh id and waits for the reply
// carrying that id.
func (c *huddleConn) request(ctx context.Context, send func(id uint64) error) error {
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	id := c.ids.Add(1)
	c.want.Store(id)
	defer c.want.Store(0)
	if err := send(id); err != nil {
		return err
	}
	for {
		select {
		case r := <-c.replies:
			if r.id != id {
				continue
			}
			if r.code != 0 {
				return fmt.Errorf("error %d: %s", r.code, r.err)
			}
			return nil
		case <-c.done:
			if code := c.closeCode.Load(); code != 0 {
				return fmt.Errorf("closed with %d", code)
			}
			return errors.New("connection closed")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *huddleConn) Subscribe(ctx context.Context, stream string, o SubOptions) error {
	return c.request(ctx, func(id uint64) error {
		m := &protocol.Subscribe{ID: id, S: stream, Presence: o.Presence}
		if o.Recover != nil {
			m.Recover = &protocol.Position{Epoch: o.Recover.Epoch, Offset: o.Recover.Offset}
		}
		if o.Join != nil {
			m.Join = c.stateRaw(o.Join)
		}
		return c.sendMsg(m)
	})
}

func (c *huddleConn) Publish(stream string, data []byte) error {
	id := c.ids.Add(1)
	if c.codec == protocol.Msgpack {
		return c.writeMsgpack(func(b []byte) []byte {
			b = appendMapHeader(b, 4)
			b = appendStr(appendStr(b, "t"), protocol.TypePub)
			b = appendUint(appendStr(b, "id"), id)
			b = appendStr(appendStr(b, "s"), stream)
			return appendBin(appendStr(b, "data"), data)
		})
	}
	return c.sendMsg(&protocol.Publish{ID: id, S: stream, Data: c.dataRaw(data)})
}

func (c *huddleConn) Whisper(stream, ev string, data []byte) error {
	if c.codec == protocol.Msgpack {
		return c.writeMsgpack(func(b []byte) []byte {
			b = appendMapHeader(b, 4)
			b = appendStr(appendStr(b, "t"), protocol.TypeWhisper)
			b = appendStr(appendStr(b, "s"), stream)
			b = appendStr(appendStr(b, "ev"), ev)
			return appendBin(appendStr(b, "data"), data)
		})
	}
	return c.sendMsg(&protocol.SendWhisper{S: stream, Ev: ev, Data: c.dataRaw(data)})
}

func (c *huddleConn) Join(stream string, state []byte) error {
	id := c.ids.Add(1)
	if c.codec == protocol.Msgpack {
		return c.writeMsgpack(func(b []byte) []byte {
			b = appendMapHeader(b, 4)
			b = appendStr(appendStr(b, "t"), protocol.TypeJoin)
			b = appendUint(appendStr(b, "id"), id)
			b = appendStr(appendStr(b, "s"), stream)
			b = appendMapHeader(appendStr(b, "state"), 1)
			return appendBin(appendStr(b, "b"), state)
		})
	}
	return c.sendMsg(&protocol.Join{ID: id, S: stream, State: c.stateRaw(state)})
}

func (c *huddleConn) Leave(stream string) error {
	if c.codec == protocol.Msgpack {
		return c.writeMsgpack(func(b []byte) []byte {
			b = appendMapHeader(b, 2)
			b = appendStr(appendStr(b, "t"), protocol.TypeLeave)
			return appendStr(appendStr(b, "s"), stream)
		})
	}
	return c.sendMsg(&protocol.Leave{S: stream})
}

// dataRaw wraps opaque bytes as a message's data: a msgpack bin, or for
// JSON (which has no bytes) a base64 string.
func (c *huddleConn) dataRaw(data []byte) protocol.Raw {
	if c.codec == protocol.Msgpack {
		return appendBin(nil, data)
	}
	return protocol.Raw(appendStr(nil, base64.StdEncoding.EncodeToString(data)))
}

// stateRaw wraps opaque bytes as a presence state, which must be a map:
// {"b": data}.
func (c *huddleConn) stateRaw(data []byte) protocol.Raw {
	return append(appendStr(appendMapHeader(nil, 1), "b"), c.dataRaw(data)...)
}

func (c *huddleConn) Pause(paused bool) { c.r.pause(c, paused) }

// Close shuts the socket down; the reactor sees the hangup and ends the
// connection (only it closes the descriptor).
func (c *huddleConn) Close() error {
	c.closing.Store(true)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead {
		return nil
	}
	return unix.Shutdown(c.fd, unix.SHUT_RDWR)
}

func (c *huddleConn) Done() <-chan struct{} { return c.done }

// sendMsg encodes one message with the connection's codec and writes it.
func (c *huddleConn) sendMsg(m protocol.Message) error { return c.sendMsgWithin(m, writeTimeout) }

// sendMsgWithin is sendMsg waiting for room in the socket at most timeout.
func (c *huddleConn) sendMsgWithin(m protocol.Message, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b, err := protocol.AppendMessage(c.codec, c.frameStartLocked(), m)
	if err != nil {
		return err
	}
	return c.writeFrameLocked(b, timeout)
}

// writeMsgpack writes the message enc appends.
func (c *huddleConn) writeMsgpack(enc func([]byte) []byte) error {
	return c.writeMsgpackWithin(enc, writeTimeout)
}

func (c *huddleConn) writeMsgpackWithin(enc func([]byte) []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeFrameLocked(enc(c.frameStartLocked()), timeout)
}

// replyTimeout bounds what the reactor writes itself (pongs, close
// echoes): it must not stall every other connection of the process for a
// socket the server stopped reading.
const replyTimeout = 100 * time.Millisecond

// A frame is encoded after room for the largest client frame header (14
// bytes); writeFrameLocked puts the header right before the payload.
const maxHeader = 14

func (c *huddleConn) frameStartLocked() []byte {
	if cap(c.wbuf) < 512 || cap(c.wbuf) > 64<<10 {
		c.wbuf = make([]byte, 0, 512)
	}
	return c.wbuf[:maxHeader]
}

// writeFrameLocked masks b[maxHeader:] and writes it as one frame. Lock
// c.wmu must be held.
func (c *huddleConn) writeFrameLocked(b []byte, timeout time.Duration) error {
	c.wbuf = b[:0]
	payload := b[maxHeader:]
	n := len(payload)
	hs := 2 + 4
	switch {
	case n >= 1<<16:
		hs += 8
	case n >= 126:
		hs += 2
	}
	h := b[maxHeader-hs : maxHeader]
	op := byte(ws.OpBinary)
	if !c.codec.Binary() {
		op = byte(ws.OpText)
	}
	h[0] = 0x80 | op
	switch {
	case n >= 1<<16:
		h[1] = 0x80 | 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	case n >= 126:
		h[1] = 0x80 | 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h[1] = 0x80 | byte(n)
	}
	c.mask ^= c.mask << 13
	c.mask ^= c.mask >> 7
	c.mask ^= c.mask << 17
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], uint32(c.mask))
	copy(h[hs-4:], key[:])
	ws.Cipher(payload, key, 0)
	return c.writeLocked(b[maxHeader-hs:], timeout)
}

// writeLocked writes b whole, waiting for room in the socket up to timeout.
// Lock c.wmu must be held.
func (c *huddleConn) writeLocked(b []byte, timeout time.Duration) error {
	if c.dead {
		return net.ErrClosed
	}
	var deadline time.Time
	for len(b) > 0 {
		n, err := unix.Write(c.fd, b)
		switch {
		case n > 0:
			b = b[n:]
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			if deadline.IsZero() {
				deadline = time.Now().Add(timeout)
			}
			left := time.Until(deadline)
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			if c.closing.Load() { // Close waits for wmu: do not make it wait long
				return net.ErrClosed
			}
			_, _ = unix.Poll([]unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLOUT}}, int(min(left, 50*time.Millisecond)/time.Millisecond)+1)
		case err != nil:
			return err
		default:
			return io.ErrShortWrite
		}
	}
	return nil
}

// writeControl writes a control frame (pong, close) with payload p. It
// runs on the reactor, so it waits for room at most a little.
func (c *huddleConn) writeControl(op ws.OpCode, p []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	f := ws.MaskFrameInPlace(ws.NewFrame(op, true, append([]byte(nil), p...)))
	b, err := ws.CompileFrame(f)
	if err == nil {
		_ = c.writeLocked(b, replyTimeout)
	}
}

// errClosing ends a connection on the server's close frame.
var errClosing = errors.New("close frame")

// readable reads what c's socket holds into buf (the reactor's) and
// handles every whole frame in it, keeping a partial one for the next
// read. false ends the connection.
func (c *huddleConn) readable(buf []byte) bool {
	if c.closing.Load() {
		return false
	}
	n, err := unix.Read(c.fd, buf)
	if n <= 0 {
		return err == unix.EAGAIN || err == unix.EINTR // 0 is the peer's FIN
	}
	now := time.Now().UnixNano()
	data := buf[:n]
	if len(c.pend) > 0 {
		c.pend = append(c.pend, data...)
		data = c.pend
	}
	parse := c.frames
	if c.onBytes != nil {
		parse = c.onBytes
	}
	used, err := parse(data, now)
	if err != nil {
		return false
	}
	switch rest := data[used:]; {
	case len(rest) == 0 && cap(c.pend) > 64<<10:
		c.pend = nil // do not keep a big buffer for small frames
	case len(rest) == 0:
		c.pend = c.pend[:0]
	default:
		c.pend = append(c.pend[:0], rest...) // copy handles the overlap
	}
	return true
}

// frames handles the whole frames at the start of b and returns how many
// bytes they took.
func (c *huddleConn) frames(b []byte, now int64) (int, error) {
	used := 0
	for {
		op, fin, p, n, err := parseFrame(b[used:])
		if err != nil || n == 0 {
			return used, err
		}
		used += n
		switch ws.OpCode(op) {
		case ws.OpText, ws.OpBinary:
			if !fin {
				c.frag = append(c.frag[:0], p...)
				continue
			}
			if err := c.dispatch(p, now, &c.ev); err != nil {
				return used, err
			}
		case ws.OpContinuation:
			c.frag = append(c.frag, p...)
			if fin {
				if err := c.dispatch(c.frag, now, &c.ev); err != nil {
					return used, err
				}
				c.frag = c.frag[:0]
			}
		case ws.OpPing:
			c.writeControl(ws.OpPong, p)
		case ws.OpClose:
			if len(p) >= 2 {
				c.closeCode.CompareAndSwap(0, int32(binary.BigEndian.Uint16(p)))
			}
			c.writeControl(ws.OpClose, p[:min(2, len(p))])
			return used, errClosing
		}
	}
}

// parseFrame reads the frame at the start of b: n is 0 while b holds only
// part of it. Server frames are not masked, but a mask is honoured (the
// payload is unmasked in place).
func parseFrame(b []byte) (op byte, fin bool, payload []byte, n int, err error) {
	if len(b) < 2 {
		return 0, false, nil, 0, nil
	}
	fin, op = b[0]&0x80 != 0, b[0]&0x0f
	masked := b[1]&0x80 != 0
	size := uint64(b[1] & 0x7f)
	h := 2
	switch size {
	case 126:
		if len(b) < 4 {
			return 0, false, nil, 0, nil
		}
		size, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, false, nil, 0, nil
		}
		size, h = binary.BigEndian.Uint64(b[2:]), 10
	}
	if size > maxFrame {
		return 0, false, nil, 0, errors.New("frame too large")
	}
	var key [4]byte
	if masked {
		if len(b) < h+4 {
			return 0, false, nil, 0, nil
		}
		copy(key[:], b[h:])
		h += 4
	}
	if uint64(len(b)-h) < size {
		return 0, false, nil, 0, nil
	}
	payload = b[h : h+int(size)]
	if masked {
		ws.Cipher(payload, key, 0)
	}
	return op, fin, payload, h + int(size), nil
}

// dispatch decodes every message in a data frame. An error ends the
// connection.
func (c *huddleConn) dispatch(frame []byte, now int64, ev *Event) error {
	if c.onFrame != nil {
		return c.onFrame(frame, now, ev)
	}
	if c.codec == protocol.Msgpack {
		return c.dispatchMsgpack(frame, now, ev)
	}
	return c.dispatchDecoded(frame, now, ev)
}

func (c *huddleConn) dispatchMsgpack(b []byte, now int64, ev *Event) error {
	for pos := 0; pos < len(b); {
		n, p, ok := mpMap(b, pos)
		if !ok {
			return errors.New("bad msgpack message")
		}
		var t, s, name, data, joins, leaves, reason, epoch, pubs []byte
		var id, code, offset int64
		var recovered bool
		for i := 0; i < n; i++ {
			key, vstart, ok := mpBytes(b, p)
			if !ok {
				return errors.New("bad msgpack key")
			}
			vend, ok := mpSkip(b, vstart)
			if !ok {
				return errors.New("bad msgpack value")
			}
			switch string(key) {
			case "t":
				t, _, _ = mpBytes(b, vstart)
			case "s":
				s, _, _ = mpBytes(b, vstart)
			case "ev":
				name, _, _ = mpBytes(b, vstart)
			case "data":
				data = b[vstart:vend]
			case "id":
				id, _, _ = mpInt(b, vstart)
			case "code":
				code, _, _ = mpInt(b, vstart)
			case "reason":
				reason, _, _ = mpBytes(b, vstart)
			case "joins":
				joins = b[vstart:vend]
			case "leaves":
				leaves = b[vstart:vend]
			case "offset":
				offset, _, _ = mpInt(b, vstart)
			case "epoch":
				epoch, _, _ = mpBytes(b, vstart)
			case "recovered":
				recovered = b[vstart] == 0xc3
			case "pubs":
				pubs = b[vstart:vend]
			}
			p = vend
		}
		pos = p
		switch string(t) {
		case protocol.TypePub, protocol.TypeWhisper:
			*ev = Event{Kind: EventPub, At: now, Stream: s, Data: c.unwrap(data), Offset: uint64(offset), Epoch: epoch}
			if string(t) == protocol.TypeWhisper {
				ev.Kind, ev.Name = EventWhisper, name
			}
			c.h(ev)
		case protocol.TypePresence:
			c.presenceMsgpack(s, joins, leaves, now, ev)
		case protocol.TypeSubscribed:
			*ev = Event{Kind: EventSubscribed, At: now, Stream: s, Offset: uint64(offset), Epoch: epoch, Recovered: recovered}
			c.h(ev)
			if err := c.recoveredMsgpack(s, pubs, now, ev); err != nil {
				return err
			}
			c.reply(reply{id: uint64(id)})
		case protocol.TypeConnected:
			c.reply(reply{id: uint64(id)})
		case protocol.TypeError:
			c.reply(reply{id: uint64(id), code: int(code), err: string(reason)})
			*ev = Event{Kind: EventError, At: now, Stream: s, Code: int(code)}
			c.h(ev)
		case protocol.TypeDisconnect:
			c.closeCode.CompareAndSwap(0, int32(code))
		case protocol.TypePing:
			_ = c.writeMsgpackWithin(func(b []byte) []byte {
				return appendStr(appendStr(appendMapHeader(b, 1), "t"), protocol.TypePong)
			}, replyTimeout)
		}
	}
	return nil
}

// recoveredMsgpack delivers the publications of a subscribed reply's
// "pubs" (a msgpack array of pub maps) on stream s, marked Recovered.
func (c *huddleConn) recoveredMsgpack(s, list []byte, now int64, ev *Event) error {
	if list == nil {
		return nil
	}
	n, p, ok := mpArray(list, 0)
	if !ok {
		return errors.New("bad msgpack pubs")
	}
	for i := 0; i < n; i++ {
		var m int
		if m, p, ok = mpMap(list, p); !ok {
			return errors.New("bad msgpack pub")
		}
		*ev = Event{Kind: EventPub, At: now, Stream: s, Recovered: true}
		for j := 0; j < m; j++ {
			key, vstart, ok := mpBytes(list, p)
			if !ok {
				return errors.New("bad msgpack pub key")
			}
			vend, ok := mpSkip(list, vstart)
			if !ok {
				return errors.New("bad msgpack pub value")
			}
			switch string(key) {
			case "s":
				ev.Stream, _, _ = mpBytes(list, vstart)
			case "offset":
				o, _, _ := mpInt(list, vstart)
				ev.Offset = uint64(o)
			case "epoch":
				ev.Epoch, _, _ = mpBytes(list, vstart)
			case "data":
				ev.Data = c.unwrap(list[vstart:vend])
			}
			p = vend
		}
		c.h(ev)
	}
	return nil
}

// presenceMsgpack delivers a presence diff's joins and leaves.
func (c *huddleConn) presenceMsgpack(s, joins, leaves []byte, now int64, ev *Event) {
	c.members(s, joins, EventJoin, now, ev)
	c.members(s, leaves, EventLeave, now, ev)
}

// members delivers one event per member in a msgpack array of members.
func (c *huddleConn) members(s, list []byte, kind EventKind, now int64, ev *Event) {
	if list == nil {
		return
	}
	n, p, ok := mpArray(list, 0)
	for i := 0; ok && i < n; i++ {
		var m int
		m, p, ok = mpMap(list, p)
		*ev = Event{Kind: kind, At: now, Stream: s}
		for j := 0; ok && j < m; j++ {
			var key []byte
			var vstart, vend int
			key, vstart, ok = mpBytes(list, p)
			if ok {
				vend, ok = mpSkip(list, vstart)
			}
			if !ok {
				break
			}
			switch string(key) {
			case "user":
				ev.User, _, _ = mpBytes(list, vstart)
			case "client":
				ev.Client, _, _ = mpBytes(list, vstart)
			case "state":
				ev.Data = c.stateBytes(list[vstart:vend])
			}
			p = vend
		}
		if ok {
			c.h(ev)
		}
	}
}

// stateBytes finds "b" in a presence state map and unwraps it.
func (c *huddleConn) stateBytes(state []byte) []byte {
	m, p, ok := mpMap(state, 0)
	for i := 0; ok && i < m; i++ {
		var key []byte
		var vend, vstart int
		key, vstart, ok = mpBytes(state, p)
		if ok {
			vend, ok = mpSkip(state, vstart)
		}
		if ok && string(key) == "b" {
			return c.unwrap(state[vstart:vend])
		}
		p = vend
	}
	return nil
}

// unwrap returns the opaque bytes inside a data value: a bin's content, or
// a base64 string's decoding (what JSON clients send).
func (c *huddleConn) unwrap(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	body, _, ok := mpBytes(v, 0)
	if !ok {
		return nil
	}
	if v[0] == 0xc4 || v[0] == 0xc5 || v[0] == 0xc6 {
		return body
	}
	n := base64.StdEncoding.DecodedLen(len(body))
	if cap(c.b64) < n {
		c.b64 = make([]byte, n)
	}
	m, err := base64.StdEncoding.Decode(c.b64[:n], body)
	if err != nil {
		return nil
	}
	return c.b64[:m]
}

// dispatchDecoded handles a JSON frame through the protocol package's
// decoder (slower; the JSON codec is there to compare wire formats).
func (c *huddleConn) dispatchDecoded(frame []byte, now int64, ev *Event) error {
	var err error
	c.decoded, err = protocol.DecodeServer(c.codec, frame, c.decoded[:0])
	if err != nil {
		return err
	}
	for _, d := range c.decoded {
		switch m := d.Msg.(type) {
		case *protocol.Pub:
			*ev = Event{Kind: EventPub, At: now, Stream: []byte(m.S), Data: c.unwrap(m.Data), Offset: m.Offset, Epoch: []byte(m.Epoch)}
			c.h(ev)
		case *protocol.Whisper:
			*ev = Event{Kind: EventWhisper, At: now, Stream: []byte(m.S), Name: []byte(m.Ev), Data: c.unwrap(m.Data)}
			c.h(ev)
		case *protocol.Presence:
			for _, j := range m.Joins {
				*ev = Event{Kind: EventJoin, At: now, Stream: []byte(m.S), User: []byte(j.User), Client: []byte(j.Client), Data: c.stateBytes(j.State)}
				c.h(ev)
			}
			for _, l := range m.Leaves {
				*ev = Event{Kind: EventLeave, At: now, Stream: []byte(m.S), User: []byte(l.User), Client: []byte(l.Client)}
				c.h(ev)
			}
		case *protocol.Connected:
			c.reply(reply{id: m.ID})
		case *protocol.Subscribed:
			*ev = Event{Kind: EventSubscribed, At: now, Stream: []byte(m.S), Offset: m.Offset, Epoch: []byte(m.Epoch),
				Recovered: m.Recovered != nil && *m.Recovered}
			c.h(ev)
			for _, p := range m.Pubs {
				*ev = Event{Kind: EventPub, At: now, Stream: []byte(cmp.Or(p.S, m.S)), Data: c.unwrap(p.Data), Offset: p.Offset, Epoch: []byte(p.Epoch), Recovered: true}
				c.h(ev)
			}
			c.reply(reply{id: m.ID})
		case *protocol.ErrorReply:
			c.reply(reply{id: m.ID, code: int(m.Code), err: m.Reason})
			*ev = Event{Kind: EventError, At: now, Stream: []byte(m.S), Code: int(m.Code)}
			c.h(ev)
		case *protocol.Disconnect:
			c.closeCode.CompareAndSwap(0, int32(m.Code))
		case *protocol.Ping:
			_ = c.sendMsgWithin(&protocol.Pong{}, replyTimeout)
		}
	}
	return nil
}

// reply hands a reply to the request waiting for its id.
func (c *huddleConn) reply(r reply) {
	if r.id == 0 || c.want.Load() != r.id {
		return
	}
	select {
	case c.replies <- r:
	default:
	}
}
