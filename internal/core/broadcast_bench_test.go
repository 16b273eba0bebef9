package core

import (
	"fmt"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
)

// BenchmarkHub_Broadcast measures a publication's path after storage: one
// encoding per wire format, the hub fan-out and the enqueue on every
// subscriber's connection (sockets are left out: the connections are marked
// busy so no write is scheduled, and their queues are emptied between runs).
func BenchmarkHub_Broadcast(b *testing.B) {
	a, err := auth.New(auth.Config{Secret: []byte("x")})
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			srv := newTestNode(b, Config{MaxQueue: 1 << 30}, a)
			conns := make([]*Session, n)
			for i := range conns {
				c := srv.detached(protocol.Codec(i % 2))
				conns[i] = c
				sub := &subscription{c: c, stream: "s"}
				c.subs = []*subscription{sub}
				srv.hub.Subscribe("s", sub)
			}
			pub := storage.Publication{Offset: 1, Data: protocol.MustRaw(map[string]any{"x": 100, "y": 200}), User: "u", Client: "c", Time: time.Now().UnixMilli()}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pub.Offset = uint64(i + 1)
				srv.HandlePublication("s", "epoch", pub)
				if i%64 == 63 {
					b.StopTimer()
					for _, c := range conns {
						c.tc.Discard()
					}
					b.StartTimer()
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}
