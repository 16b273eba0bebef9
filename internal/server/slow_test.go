package server_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// TestSlowConsumerDisconnected: a subscriber that stops reading is cut with
// 4008 once its outbound queue passes MaxQueue (DESIGN rule 4), while a
// reading subscriber of the same stream gets every publication, in order,
// promptly, and is never cut.
func TestSlowConsumerDisconnected(t *testing.T) {
	const (
		maxQueue = 64 << 10
		// Each batch (~36 KB on the wire) fits in the good reader's queue
		// bound even if it read nothing meanwhile, and the test waits for
		// the whole batch before the next, so the good reader can never be
		// mistaken for a slow one.
		batch = 32
		// The payloads stop at 64 MiB: far past loopback socket buffers
		// plus MaxQueue. Not cut by then is a failure.
		maxPubs    = 64 << 10
		maxLatency = 2 * time.Second
	)
	h := start(t, func(o *harnessOpts) { o.cfg.MaxQueue = maxQueue })
	stream := biStream("slow")

	good := biDial(t, h, "good")
	top := subscribe(t, good, 2, stream, nil)

	// The slow client: connect and subscribe by hand, then never read.
	slow, r := biDialRaw(t, h, wsclient.Options{})
	biConnectRaw(t, slow, r, token(t, "slow"))
	if err := slow.Send(&protocol.Subscribe{ID: 2, S: stream}); err != nil {
		t.Fatal(err)
	}
	if sub := biReadUntil[*protocol.Subscribed](t, r, wait); sub.Offset != top.Offset {
		t.Fatalf("slow subscribed at offset %d, good at %d", sub.Offset, top.Offset)
	}
	biWaitConns(t, h, 2)

	pad := strings.Repeat("p", 1000)
	next := top.Offset + 1 // the offset good expects next
	var maxLat, sumLat time.Duration
	published := 0
	for {
		if published >= maxPubs {
			t.Fatalf("slow consumer still connected after %d publications of 1 KiB (MaxQueue %d)", published, maxQueue)
		}
		var b strings.Builder
		b.WriteByte('[')
		for i := 0; i < batch; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"stream":%q,"data":{"i":%d,"p":%q}}`, stream, published+i, pad)
		}
		b.WriteByte(']')
		t0 := time.Now()
		offs := biPublish(t, h, b.String())
		if len(offs) != batch || offs[0] != next {
			t.Fatalf("batch at %d: offsets %v, want %d from %d", published, offs, batch, next)
		}
		for i := 0; i < batch; i++ {
			p, err := wsclient.Wait[*protocol.Pub](good, maxLatency)
			if err != nil {
				t.Fatalf("good reader: publication %d (offset %d) not within %v: %v", published+i, next, maxLatency, err)
			}
			lat := time.Since(t0)
			maxLat, sumLat = max(maxLat, lat), sumLat+lat
			if p.Offset != next {
				t.Fatalf("good reader got offset %d, want %d (gap or reorder)", p.Offset, next)
			}
			var d struct {
				I int `msgpack:"i"`
			}
			if err := msgpack.Unmarshal(p.Data, &d); err != nil || d.I != published+i {
				t.Fatalf("offset %d carries i=%d (%v), want %d", p.Offset, d.I, err, published+i)
			}
			next++
		}
		published += batch
		if n, _ := biMetric(t, h, "huddle_queue_drops_total", `reason="slow_consumer"`); n > 0 {
			break
		}
	}
	t.Logf("slow consumer cut after %d publications (~%d KiB); good reader: %d pubs, publish->deliver max %v, mean %v",
		published, published*11/10, published, maxLat, sumLat/time.Duration(published))
	if maxLat > time.Second {
		t.Errorf("good reader's worst publish->deliver latency %v, want under 1s", maxLat)
	}
	if n, ok := biMetric(t, h, "huddle_queue_drops_total", `reason="slow_consumer"`); !ok || n != 1 {
		t.Errorf(`huddle_queue_drops_total{reason="slow_consumer"} = %v (found %v), want 1`, n, ok)
	}
	// The server closes the slow connection (after a short grace to flush
	// the disconnect, which cannot get through a full socket).
	biWaitConns(t, h, 1)
	if err := good.Err(); err != nil {
		t.Fatalf("good reader's connection ended: %v", err)
	}

	// Drain the slow socket: what arrives is an unbroken prefix of the
	// stream, then (if it fit) disconnect 4008 and a close frame 4008, then
	// EOF. The tail of the last frame may be cut off.
	last := top.Offset
	var sawDisconnect, sawClose bool
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := r.next(time.Until(deadline))
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("slow client's socket still open %v after it was counted closed", 10*time.Second)
			}
			if !biIsEOF(err) {
				t.Fatalf("draining the slow client: %v", err)
			}
			break
		}
		if sawClose {
			t.Fatalf("frame op %v after the close frame", f.Header.OpCode)
		}
		switch f.Header.OpCode {
		case 0x8:
			sawClose = true
			if code := biCloseCode(f); code != int(protocol.CodeSlowConsumer) {
				t.Fatalf("slow client's close frame %d, want 4008", code)
			}
		case 0x1, 0x2:
			msgs, err := protocol.DecodeServer(slow.Codec, f.Payload, nil)
			if err != nil {
				t.Fatalf("slow client: undecodable frame: %v", err)
			}
			for _, d := range msgs {
				switch m := d.Msg.(type) {
				case *protocol.Pub:
					if sawDisconnect || m.Offset != last+1 {
						t.Fatalf("slow client got offset %d after %d (disconnect seen: %v)", m.Offset, last, sawDisconnect)
					}
					last = m.Offset
				case *protocol.Disconnect:
					sawDisconnect = true
					if m.Code != protocol.CodeSlowConsumer || !m.Reconnect {
						t.Fatalf("slow client: disconnect %d reconnect=%v, want 4008 reconnect=true", m.Code, m.Reconnect)
					}
				}
			}
		}
	}
	if last >= next-1 {
		t.Fatalf("the slow client read every publication (up to %d); it was never slow", last)
	}
	t.Logf("slow client had %d pubs (~%d KiB) buffered in the kernel; disconnect readable: %v, close frame readable: %v",
		last-top.Offset, (last-top.Offset)*11/10, sawDisconnect, sawClose)

	// The server and the good reader carry on.
	offs := biPublish(t, h, fmt.Sprintf(`{"stream":%q,"data":{"i":-1}}`, stream))
	p, err := wsclient.Wait[*protocol.Pub](good, wait)
	if err != nil || p.Offset != offs[0] || p.Offset != next {
		t.Fatalf("good reader after the cut: %+v %v, want offset %d", p, err, next)
	}
	biHealthy(t, h)
}
