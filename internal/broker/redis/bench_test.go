package redis

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/internal/redistest"
	"github.com/huddle-rt/huddle/storage"
)

// counter is a broker.Handler that counts publications.
type counter struct {
	n    atomic.Int64
	want atomic.Int64
	done chan struct{}
}

func (c *counter) HandlePublication(string, string, storage.Publication) {
	if c.n.Add(1) == c.want.Load() {
		close(c.done)
	}
}
func (c *counter) HandleEphemeral(string, []byte) {}
func (c *counter) HandleLost(string, broker.Lost) {}

// BenchmarkBroker_Publish measures publishing with history through Redis:
// per publication one Lua script that assigns the offset, XADDs with
// MAXLEN, sets the expiry and PUBLISHes, then the delivery to another
// node subscribed to the stream (the timer stops once it has them all).
// One publisher is bound by the round trip; several share the client's
// pipeline.
func BenchmarkBroker_Publish(b *testing.B) {
	url := redistest.URL(b)
	for _, publishers := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) {
			c := newCluster(b, url, false)
			recv := &counter{done: make(chan struct{})}
			recv.want.Store(int64(b.N))
			pub, sub := c.node(b), c.nodeWith(b, recv)
			sub.subscribe(b, "bench")
			data := []byte(`{"x":100,"y":200,"pad":"0123456789abcdef0123456789abcdef"}`)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range publishers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, _, err := pub.b.Publish(context.Background(), "bench", storage.Publication{Data: data, User: "u", Client: "c"}, keep); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			select {
			case <-recv.done:
			case <-time.After(30 * time.Second):
				b.Fatalf("the subscribed node got %d of %d publications", recv.n.Load(), b.N)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pubs/s")
		})
	}
}
