package core

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/whisper"
)

// whisperRelayCases drive both TestWhisperRelayAllocs and
// BenchmarkWhisper_Relay: one sender, this many other subscribers.
var whisperRelayCases = []struct{ receivers int }{{20}, {200}}

// whisperBench is a server with in-memory connections (no sockets: each is
// marked busy, so an enqueue schedules no write) subscribed to streams, and
// an identity allowed to whisper anywhere.
type whisperBench struct {
	srv   *testNode
	id    *auth.Identity
	conns []*Session
}

func newWhisperBench(tb testing.TB) *whisperBench {
	tb.Helper()
	secret := []byte("whisper-bench-secret")
	a, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := auth.SignHS256(secret, "u", time.Now().Add(time.Hour), nil, map[string][]string{"*": {"sub", "whisper"}})
	if err != nil {
		tb.Fatal(err)
	}
	id, err := a.Verify(tok)
	if err != nil {
		tb.Fatal(err)
	}
	srv := newTestNode(tb, Config{
		MaxQueue: 1 << 30,
		// The relay path, not the rate limit, is measured.
		Whisper: whisper.Config{Rate: 1e12, Burst: 1 << 40},
	}, a)
	return &whisperBench{srv: srv, id: id}
}

// add connects and subscribes a connection to stream; codecs alternate as in
// BenchmarkHub_Broadcast.
func (w *whisperBench) add(stream string) *Session {
	c := w.srv.detached(protocol.Codec(len(w.conns) % 2))
	c.clientID = fmt.Sprintf("00000000-0000-0000-0000-%012d", len(w.conns))
	c.ident.Store(w.id)
	sub := &subscription{c: c, stream: stream}
	c.subs = []*subscription{sub}
	w.srv.hub.Subscribe(stream, sub)
	w.conns = append(w.conns, c)
	return c
}

// drain empties every queue, as a flush would.
func (w *whisperBench) drain() {
	for _, c := range w.conns {
		c.tc.Discard()
	}
}

// behind marks every connection as a receiver whose socket refused bytes.
func (w *whisperBench) behind() {
	for _, c := range w.conns {
		c.tc.SetBehind()
	}
}

// queuedItems counts queued messages over all connections.
func (w *whisperBench) queuedItems() int {
	n := 0
	for _, c := range w.conns {
		n += c.tc.QueueLen()
	}
	return n
}

// relay builds one sender and receivers other subscribers of stream "s".
func newWhisperRelay(tb testing.TB, receivers int) (*whisperBench, *Session, *protocol.SendWhisper) {
	w := newWhisperBench(tb)
	sender := w.add("s")
	for range receivers {
		w.add("s")
	}
	m := &protocol.SendWhisper{S: "s", Ev: "cursor", Data: protocol.MustRaw(map[string]int{"x": 100, "y": 200})}
	return w, sender, m
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestWhisperRelayAllocs: relaying a whisper allocates the same whatever the
// number of receivers, so nothing is allocated per delivery; both when each
// receiver's queue is empty (an append) and when it still holds the
// sender's previous cursor (replaced in place).
func TestWhisperRelayAllocs(t *testing.T) {
	for _, mode := range []struct {
		name    string
		drained bool
	}{{"append", true}, {"conflate", false}} {
		t.Run(mode.name, func(t *testing.T) {
			allocs := make([]float64, len(whisperRelayCases))
			for i, tc := range whisperRelayCases {
				w, sender, m := newWhisperRelay(t, tc.receivers)
				if !mode.drained {
					w.behind() // whispers conflate only for receivers that are behind
				}
				allocs[i] = testing.AllocsPerRun(500, func() {
					if mode.drained {
						w.drain()
					}
					sender.Whisper(m)
				})
				// Every receiver holds exactly the newest whisper; the sender
				// none (never echoed).
				if n := w.queuedItems(); n != tc.receivers {
					t.Fatalf("%d receivers: %d queued messages, want one each", tc.receivers, n)
				}
				if n := sender.tc.QueueLen(); n != 0 {
					t.Fatalf("the sender's queue holds %d messages", n)
				}
				t.Logf("%d receivers: %v allocs per whisper", tc.receivers, allocs[i])
			}
			// Under -race sync.Pool drops items at random, so the counts
			// wobble by an alloc or two; an allocation per delivery would add
			// 180.
			slack := 0.0
			if raceEnabled() {
				slack = 2
			}
			for i := 1; i < len(allocs); i++ {
				if d := allocs[i] - allocs[0]; d > slack || d < -slack {
					t.Errorf("allocs per whisper %v at %d receivers but %v at %d: something is allocated per delivery",
						allocs[i], whisperRelayCases[i].receivers, allocs[0], whisperRelayCases[0].receivers)
				}
			}
		})
	}
}

// reportPerDelivery adds ns/delivery and allocs/delivery to a benchmark whose
// ops each deliver to fanout receivers; before is the MemStats taken just
// before the timed loop.
func reportPerDelivery(b *testing.B, before *runtime.MemStats, fanout int) {
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	deliveries := float64(b.N) * float64(fanout)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deliveries, "allocs/delivery")
}

// BenchmarkWhisper_Relay measures a whisper's relay from one sender to its
// stream's other subscribers: checks, cache update, one encoding per wire
// format and the enqueue on every receiver. Queues are emptied every 64 ops,
// so most deliveries replace the sender's previous cursor in place (a
// receiver that flushes less often than the cursor moves).
func BenchmarkWhisper_Relay(b *testing.B) {
	for _, tc := range whisperRelayCases {
		b.Run(fmt.Sprintf("receivers=%d", tc.receivers), func(b *testing.B) {
			w, sender, m := newWhisperRelay(b, tc.receivers)
			b.ReportAllocs()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sender.Whisper(m)
				if i%64 == 63 {
					b.StopTimer()
					w.drain()
					b.StartTimer()
				}
			}
			b.StopTimer()
			reportPerDelivery(b, &before, tc.receivers)
		})
	}
}

// BenchmarkWhisper_Rooms measures whispers spread over 50 rooms of 20
// clients: each op is one whisper in the next room from that room's next
// sender, relayed to the room's 19 others. Senders differ from one op in a
// room to the next, so every delivery is an append.
func BenchmarkWhisper_Rooms(b *testing.B) {
	const rooms, size = 50, 20
	w := newWhisperBench(b)
	senders := make([][]*Session, rooms)
	msgs := make([]*protocol.SendWhisper, rooms)
	for r := range rooms {
		stream := fmt.Sprintf("room:%d", r)
		for range size {
			senders[r] = append(senders[r], w.add(stream))
		}
		msgs[r] = &protocol.SendWhisper{S: stream, Ev: "cursor", Data: protocol.MustRaw(map[string]int{"x": 100, "y": 200})}
	}
	b.ReportAllocs()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := i % rooms
		senders[r][(i/rooms)%size].Whisper(msgs[r])
		if i%64 == 63 {
			b.StopTimer()
			w.drain()
			b.StartTimer()
		}
	}
	b.StopTimer()
	reportPerDelivery(b, &before, size-1)
}
