package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/huddle-rt/huddle/protocol"
)

// reactorPair registers one end of a socket pair with the reactor as a
// msgpack connection and returns it with the other end (the "server").
func reactorPair(t *testing.T, h Handler) (*huddleConn, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := clientReactor()
	if err != nil {
		t.Fatal(err)
	}
	c := &huddleConn{fd: fds[0], r: r, codec: protocol.Msgpack, h: h, done: make(chan struct{}), replies: make(chan reply, 1), mask: 99}
	if err := r.add(c); err != nil {
		t.Fatal(err)
	}
	srv := os.NewFile(uintptr(fds[1]), "server")
	t.Cleanup(func() { srv.Close() })
	return c, srv
}

func wsFrame(op ws.OpCode, fin bool, p []byte) []byte {
	b, err := ws.CompileFrame(ws.NewFrame(op, fin, p))
	if err != nil {
		panic(err)
	}
	return b
}

func waitDone(t *testing.T, c *huddleConn) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection did not end")
	}
}

// TestReactorFrames: frames that arrive a few bytes at a time, a 16-bit
// length, a masked frame, a fragmented message and a ping come out as the
// same events as one frame read whole; the server's close frame is echoed
// and ends the connection.
func TestReactorFrames(t *testing.T) {
	stamp := AppendStamp(nil, 7, 123456789, 0, 40)
	payload := serverFrame(t, protocol.Msgpack, stamp)
	var want []event
	ref := &huddleConn{codec: protocol.Msgpack, h: collect(&want), replies: make(chan reply, 1)}
	if err := ref.dispatch(payload, 1, &Event{}); err != nil {
		t.Fatal(err)
	}
	want = append(append(append([]event(nil), want...), want...), want...)
	// The frame's disconnect message (4008) named the code before the close
	// frame's 4001.
	want = append(want, event{kind: EventClosed, code: 4008})

	var got []event
	c, srv := reactorPair(t, func(e *Event) {
		if e.Kind == EventClosed {
			got = append(got, event{kind: e.Kind, code: e.Code})
			return
		}
		collect(&got)(e)
	})
	var in bytes.Buffer
	in.Write(wsFrame(ws.OpBinary, true, payload))
	masked := ws.MaskFrameInPlace(ws.NewFrame(ws.OpBinary, true, append([]byte(nil), payload...)))
	mb, _ := ws.CompileFrame(masked)
	in.Write(mb)
	half := len(payload) / 2
	in.Write(wsFrame(ws.OpBinary, false, payload[:half]))
	in.Write(wsFrame(ws.OpPing, true, []byte("hi")))
	in.Write(wsFrame(ws.OpContinuation, true, payload[half:]))
	var code [2]byte
	binary.BigEndian.PutUint16(code[:], 4001)
	in.Write(wsFrame(ws.OpClose, true, code[:]))
	for b := in.Bytes(); len(b) > 0; {
		n := min(7, len(b))
		if _, err := srv.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
		time.Sleep(200 * time.Microsecond)
	}
	waitDone(t, c)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events:\n got %v\nwant %v", got, want)
	}
	// What the client wrote back: a pong with the ping's payload, then the
	// close echo with the code.
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, w := range []struct {
		op ws.OpCode
		p  string
	}{{ws.OpPong, "hi"}, {ws.OpClose, string(code[:])}} {
		f, err := ws.ReadFrame(srv)
		if err != nil {
			t.Fatal(err)
		}
		ws.Cipher(f.Payload, f.Header.Mask, 0)
		if f.Header.OpCode != w.op || string(f.Payload) != w.p || !f.Header.Masked {
			t.Fatalf("client wrote %v %q (masked %v), want %v %q", f.Header.OpCode, f.Payload, f.Header.Masked, w.op, w.p)
		}
	}
}

// TestReactorCloseWhilePaused: a paused connection reads nothing, and Close
// from another goroutine still ends it (only the reactor closes the
// descriptor).
func TestReactorCloseWhilePaused(t *testing.T) {
	var pubs, closed int
	c, srv := reactorPair(t, func(e *Event) {
		switch e.Kind {
		case EventPub:
			pubs++
		case EventClosed:
			closed++
		}
	})
	c.Pause(true)
	frame := serverFrame(t, protocol.Msgpack, AppendStamp(nil, 1, 2, 0, 30))
	if _, err := srv.Write(wsFrame(ws.OpBinary, true, frame)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, c)
	if pubs != 0 || closed != 1 {
		t.Fatalf("paused connection delivered %d publications, %d closes", pubs, closed)
	}
	if err := c.Whisper("s", "e", []byte("x")); err == nil {
		t.Fatal("a write after the end succeeded")
	}
}
