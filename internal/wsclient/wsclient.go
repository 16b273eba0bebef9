// Package wsclient is a small Huddle protocol client over a real WebSocket
// connection, for tests and the bench tool. It is not the SDK: it exposes
// raw frames and close codes so tests can misbehave on purpose.
package wsclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/huddle-rt/huddle/protocol"
)

// Options configure Dial.
type Options struct {
	// Subprotocols offered; nil offers huddle.v1.msgpack.
	Subprotocols []string
	// NoSubprotocol offers none (the server then speaks JSON).
	NoSubprotocol bool
	// Header is added to the upgrade request.
	Header http.Header
	// NoReader leaves the connection unread: nothing consumes what the
	// server sends (a slow consumer).
	NoReader bool
	// Buffer is the capacity of the message channel. Default 65536.
	Buffer int
	// LocalAddr binds the client side, e.g. 127.0.0.2:0.
	LocalAddr *net.TCPAddr
	// Control, when set, is called on the client socket after it is created
	// and before it connects, as net.Dialer.Control is: the place to set
	// socket options such as a small SO_RCVBUF. Nil sets none.
	Control func(network, address string, c syscall.RawConn) error
}

// Client is one connection.
type Client struct {
	Conn  net.Conn
	Codec protocol.Codec

	msgs chan protocol.Message
	done chan struct{}

	wmu sync.Mutex // serialises frame writes

	mu          sync.Mutex // guards the following
	closeCode   int
	closeReason string
	readErr     error
}

// ErrClosed is returned by Next after the connection ended.
var ErrClosed = errors.New("wsclient: connection closed")

// Dial connects to a Huddle WebSocket URL such as ws://127.0.0.1:8080/ws.
func Dial(ctx context.Context, url string, o Options) (*Client, error) {
	protos := o.Subprotocols
	if protos == nil && !o.NoSubprotocol {
		protos = []string{protocol.SubprotocolMsgpack}
	}
	d := ws.Dialer{Protocols: protos, Header: ws.HandshakeHeaderHTTP(o.Header)}
	if o.LocalAddr != nil || o.Control != nil {
		nd := net.Dialer{Control: o.Control}
		if o.LocalAddr != nil { // a nil *TCPAddr in the interface would not be nil
			nd.LocalAddr = o.LocalAddr
		}
		d.NetDial = nd.DialContext
	}
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	c := &Client{Conn: conn, Codec: protocol.JSON, done: make(chan struct{})}
	if cd, ok := protocol.CodecFor(hs.Protocol); ok {
		c.Codec = cd
	}
	buf := o.Buffer
	if buf <= 0 {
		buf = 1 << 16
	}
	c.msgs = make(chan protocol.Message, buf)
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	if o.NoReader {
		return c, nil
	}
	go c.read(r)
	return c, nil
}

func (c *Client) read(r io.Reader) {
	defer close(c.done)
	defer close(c.msgs)
	for {
		f, err := ws.ReadFrame(r)
		if err != nil {
			c.setErr(err)
			return
		}
		switch f.Header.OpCode {
		case ws.OpText, ws.OpBinary, ws.OpContinuation:
			msgs, err := protocol.DecodeServer(c.Codec, f.Payload, nil)
			if err != nil {
				c.setErr(fmt.Errorf("wsclient: undecodable frame: %w", err))
				return
			}
			for _, d := range msgs {
				if d.Err != nil {
					c.setErr(d.Err)
					return
				}
				if _, ok := d.Msg.(*protocol.Ping); ok {
					_ = c.Send(&protocol.Pong{})
				}
				c.msgs <- d.Msg
			}
		case ws.OpPing:
			_ = c.writeFrame(ws.OpPong, f.Payload)
		case ws.OpClose:
			code := 1005
			reason := ""
			if len(f.Payload) >= 2 {
				code = int(binary.BigEndian.Uint16(f.Payload))
				reason = string(f.Payload[2:])
			}
			c.mu.Lock()
			c.closeCode, c.closeReason = code, reason
			c.mu.Unlock()
			_ = c.writeFrame(ws.OpClose, f.Payload[:min(2, len(f.Payload))])
			_ = c.Conn.Close()
			c.setErr(ErrClosed)
			return
		}
	}
}

func (c *Client) setErr(err error) {
	c.mu.Lock()
	if c.readErr == nil {
		c.readErr = err
	}
	c.mu.Unlock()
}

// Send encodes msgs into one frame and writes it.
func (c *Client) Send(msgs ...protocol.Message) error {
	b, err := protocol.EncodeFrame(c.Codec, msgs...)
	if err != nil {
		return err
	}
	op := ws.OpBinary
	if c.Codec == protocol.JSON {
		op = ws.OpText
	}
	return c.writeFrame(op, b)
}

// SendRaw writes one masked frame with any opcode and payload.
func (c *Client) SendRaw(op ws.OpCode, payload []byte) error { return c.writeFrame(op, payload) }

func (c *Client) writeFrame(op ws.OpCode, payload []byte) error {
	p := append([]byte(nil), payload...)
	f := ws.MaskFrameInPlace(ws.NewFrame(op, true, p))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return ws.WriteFrame(c.Conn, f)
}

// WriteBytes writes raw bytes to the socket (for partial frames).
func (c *Client) WriteBytes(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.Conn.Write(b)
	return err
}

// Next returns the next message, waiting at most timeout.
func (c *Client) Next(timeout time.Duration) (protocol.Message, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			return nil, c.Err()
		}
		return m, nil
	case <-t.C:
		return nil, fmt.Errorf("wsclient: no message within %v", timeout)
	}
}

// Err returns why the connection ended, or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// CloseCode returns the code and reason of the server's close frame, 0 if
// none arrived.
func (c *Client) CloseCode() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode, c.closeReason
}

// Done is closed when the connection's reader ends.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close closes the socket without a close handshake.
func (c *Client) Close() error { return c.Conn.Close() }

// Connect sends connect with token and waits for connected.
func (c *Client) Connect(token string, timeout time.Duration) (*protocol.Connected, error) {
	if err := c.Send(&protocol.Connect{ID: 1, Token: token}); err != nil {
		return nil, err
	}
	m, err := c.Next(timeout)
	if err != nil {
		return nil, err
	}
	if cm, ok := m.(*protocol.Connected); ok {
		return cm, nil
	}
	return nil, fmt.Errorf("wsclient: got %s %+v instead of connected", m.Type(), m)
}

// Wait returns the next message of type T, skipping pings and others; it
// fails on timeout or close.
func Wait[T protocol.Message](c *Client, timeout time.Duration) (T, error) {
	deadline := time.Now().Add(timeout)
	var zero T
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return zero, fmt.Errorf("wsclient: no %T within %v", zero, timeout)
		}
		m, err := c.Next(left)
		if err != nil {
			return zero, err
		}
		if t, ok := m.(T); ok {
			return t, nil
		}
	}
}

// WaitClosed waits for the connection to end and returns the close code.
func (c *Client) WaitClosed(timeout time.Duration) (int, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case _, ok := <-c.msgs:
			if !ok {
				code, _ := c.CloseCode()
				return code, nil
			}
		case <-t.C:
			return 0, fmt.Errorf("wsclient: still open after %v", timeout)
		}
	}
}

// DialConnected dials and connects in one step.
func DialConnected(ctx context.Context, url, token string, o Options) (*Client, *protocol.Connected, error) {
	c, err := Dial(ctx, url, o)
	if err != nil {
		return nil, nil, err
	}
	cm, err := c.Connect(token, 5*time.Second)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, cm, nil
}

// Deadline helper for callers without a context.
func Ctx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
