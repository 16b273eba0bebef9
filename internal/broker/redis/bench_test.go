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

// BenchmarkBroker_PublishBatch measures a batch of 1,000 publications over
// 10 streams through PublishBatch (one pipeline) against as many Publish
// calls one after the other, until another node has delivered them all.
func BenchmarkBroker_PublishBatch(b *testing.B) {
	url := redistest.URL(b)
	const size = 1000
	data := []byte(`{"x":100,"y":200,"pad":"0123456789abcdef0123456789abcdef"}`)
	for _, mode := range []string{"batch", "loop"} {
		b.Run(fmt.Sprintf("mode=%s/items=%d", mode, size), func(b *testing.B) {
			c := newCluster(b, url, false)
			recv := &counter{done: make(chan struct{})}
			recv.want.Store(int64(b.N) * size)
			pub, sub := c.node(b), c.nodeWith(b, recv)
			items := make([]broker.Item, size)
			for i := range items {
				items[i] = broker.Item{Stream: fmt.Sprintf("bench%d", i%10), Pub: storage.Publication{Data: data, User: "u", Client: "c"}, Opts: keep}
			}
			for i := range 10 {
				sub.subscribe(b, fmt.Sprintf("bench%d", i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if mode == "batch" {
					if _, err := pub.b.PublishBatch(context.Background(), items); err != nil {
						b.Fatal(err)
					}
					continue
				}
				for _, it := range items {
					if _, _, err := pub.b.Publish(context.Background(), it.Stream, it.Pub, it.Opts); err != nil {
						b.Fatal(err)
					}
				}
			}
			select {
			case <-recv.done:
			case <-time.After(60 * time.Second):
				b.Fatalf("the subscribed node got %d of %d publications", recv.n.Load(), int64(b.N)*size)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "pubs/s")
		})
	}
}
