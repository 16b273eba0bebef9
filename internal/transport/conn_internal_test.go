package transport

import (
	"io"
	"log/slog"
	"testing"
	"time"
	"unsafe"
)

// stubSession is a session that records what the transport tells it.
type stubSession struct {
	c        *Conn
	max      int
	messages [][]byte
	goodbyes []Reason
	closed   int
}

func (s *stubSession) OnMessage(p []byte) { s.messages = append(s.messages, append([]byte(nil), p...)) }
func (s *stubSession) MaxMessage() int    { return s.max }
func (s *stubSession) Goodbye(r Reason, detail string) (uint16, []byte, bool) {
	s.goodbyes = append(s.goodbyes, r)
	return 4000 + uint16(r), []byte("bye"), r == SlowConsumer
}
func (s *stubSession) Check(time.Time)     {}
func (s *stubSession) WaitingLocked() bool { return false }
func (s *stubSession) Room()               {}
func (s *stubSession) Closed(bool)         { s.closed++ }

func testTransport(t testing.TB, maxQueue int) *Transport {
	t.Helper()
	tr, err := New(Config{MaxQueue: maxQueue, Workers: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// TestEdgeSlowConsumerNoSecondWorker: the slow-consumer branch of
// EnqueueLocked must not ask the caller to kick a worker when one already
// runs the connection: two goroutines in run() on the same connection would
// race on partial, pendingOut and hangup, and the first to leave could
// close the descriptor under the other.
func TestEdgeSlowConsumerNoSecondWorker(t *testing.T) {
	tr := testTransport(t, 1024)
	var ss *stubSession
	c := tr.Detached(func(c *Conn) Session { ss = &stubSession{c: c, max: 1 << 20}; return ss })
	c.mu.Lock()
	start := c.EnqueueLocked(make([]byte, 2048), 0)
	state := c.state
	c.mu.Unlock()
	if state != stateClosing {
		t.Fatalf("state %d, want closing (slow consumer)", state)
	}
	if start {
		t.Fatal("EnqueueLocked asked the caller to kick a worker while one already runs the connection")
	}
	if len(ss.goodbyes) != 1 || ss.goodbyes[0] != SlowConsumer {
		t.Fatalf("goodbyes %v, want [SlowConsumer]", ss.goodbyes)
	}
}

// TestPacerArmsForEarliestDue: a connection due before the round the
// pacer is armed for brings the round forward (else it would wait for the
// later connection's due).
func TestPacerArmsForEarliestDue(t *testing.T) {
	p := newPacer(time.Hour)
	defer p.stop()
	now := time.Now().UnixNano()
	p.hold(&Conn{}, now+int64(50*time.Minute))
	p.hold(&Conn{}, now+int64(10*time.Minute))
	p.mu.Lock()
	at := p.at
	p.mu.Unlock()
	if at > now+int64(11*time.Minute) {
		t.Fatalf("round armed %v ahead, want 10m (the earlier due)", time.Duration(at-now))
	}
}

// TestBatching: messages queued together go out as one frame under the
// batching framings and as a frame each under the others.
func TestBatching(t *testing.T) {
	items := []outItem{{b: []byte("a")}, {b: []byte("bc")}, {b: []byte("d")}}
	for _, tc := range []struct {
		f      Framing
		frames int
		op     byte
		size   int
	}{
		{TextLines, 1, opText, 6},
		{BinaryConcat, 1, opBinary, 4},
		{Text, 3, opText, 1},
		{Binary, 3, opBinary, 1},
	} {
		tr := testTransport(t, 1<<20)
		c := &Conn{t: tr, framing: tc.f}
		buf, _ := c.appendFrames(nil, items)
		frames := 0
		for len(buf) > 0 {
			h, n, err := parseHeader(append([]byte{buf[0], buf[1] | 0x80}, maskOf(buf[2:])...))
			if err != nil || n == 0 {
				t.Fatalf("framing %d: %v", tc.f, err)
			}
			if frames == 0 && (h.op != tc.op || int(h.length) != tc.size) {
				t.Fatalf("framing %d: first frame op %d length %d, want %d %d", tc.f, h.op, h.length, tc.op, tc.size)
			}
			buf = buf[2+int(h.length):]
			frames++
		}
		if frames != tc.frames {
			t.Errorf("framing %d: %d frames, want %d", tc.f, frames, tc.frames)
		}
	}
}

// maskOf turns a server frame's payload into a masked client one, for
// parseHeader (which wants client frames): a zero mask and the payload.
func maskOf(p []byte) []byte { return append([]byte{0, 0, 0, 0}, p...) }

// TestConnFootprint guards the memory of an idle connection: the allocator
// rounds Conn up to its size class, so a few bytes more cost 32. State few
// connections need goes behind a pointer (fragment).
func TestConnFootprint(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 256 {
		t.Errorf("Conn is %d bytes, over the 256-byte size class", n)
	}
}
