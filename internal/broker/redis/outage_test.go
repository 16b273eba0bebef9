package redis

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/internal/redistest"
)

// TestBroker_UnsubscribeBusyStreamDoesNotStallOthers: Unsubscribe used to
// cancel the attempt's ctx, so rueidis's Receive stopped reading the
// subscription's message channel (buffer 16) while the return hook waited
// (up to 1s) for the UNSUBSCRIBE reply on the same pipe; the pipe's reader,
// blocked pushing the 17th message of the busy channel, never read it, and
// every other stream on the node stalled for that second. Now the channel
// unsubscribes in Redis first and keeps reading until the reply.
func TestBroker_UnsubscribeBusyStreamDoesNotStallOthers(t *testing.T) {
	url := redistest.URL(t)
	c := newCluster(t, url, false)
	n := c.node(t)
	pub := c.node(t)
	n.subscribe(t, "hot")
	n.subscribe(t, "cold")

	defer flood(t, c, n, "hot")()

	var worst time.Duration
	for i := 1; i <= 3; i++ {
		if err := n.b.Unsubscribe(context.Background(), "hot"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		pub.publish(t, "cold", fmt.Sprint(i))
		n.rec.waitFor(t, "cold publication", func() bool { return len(n.rec.offsets("cold")) >= i })
		worst = max(worst, time.Since(start))
		n.subscribe(t, "hot")
	}
	if worst > 500*time.Millisecond {
		t.Fatalf("a publication on an unrelated stream took %v to arrive right after Unsubscribe of a busy stream (pubsub pipe stalled)", worst)
	}
}

// TestBroker_RelayFailureReported: an ephemeral message (a presence diff:
// the leave of a dead node's member) that the sending node cannot PUBLISH
// within relayTimeout is dropped, and the receiving node's subscription
// never broke; the sender then publishes a loss marker once Redis takes
// writes again, and the receiver reports the loss (HandleLost), so its
// subscribers resubscribe instead of keeping a stale view.
func TestBroker_RelayFailureReported(t *testing.T) {
	url := redistest.URL(t)
	c := newCluster(t, url, false)
	a, b := c.node(t), c.node(t)
	a.subscribe(t, "room")
	b.subscribe(t, "room")
	// Writes (PUBLISH included) wait for 1.5s: longer than relayTimeout.
	if err := c.admin.Do(context.Background(), c.admin.B().ClientPause().Timeout(1500).Write().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	a.b.PublishEphemeral("room", []byte("leave:c1"), true)
	time.Sleep(3 * time.Second)
	got, lost := len(b.rec.ephOf("room")), len(b.rec.lostOf("room"))
	if got == 0 && lost == 0 {
		t.Fatalf("ephemeral message dropped by the sender (RelayDropped=%d) and the receiver was not told: no message, no HandleLost", a.b.Stats().RelayDropped)
	}
}

// TestBroker_ResubscribeBusyStreamFails: the last subscriber of a busy
// stream leaves and a new one arrives at once (churn). The old attempt's
// UNSUBSCRIBE reply is read only after the hook gave up (1s), and rueidis
// then removes every subscription of that channel, the new attempt's
// included, so the new Subscribe fails ("unsubscribed by the server",
// reported as ErrUnavailable -> 4500) or takes over a second.
func TestBroker_ResubscribeBusyStream(t *testing.T) {
	url := redistest.URL(t)
	c := newCluster(t, url, false)
	n := c.node(t)
	n.subscribe(t, "hot")
	defer flood(t, c, n, "hot")()
	var failures []string
	for i := 0; i < 3; i++ {
		n.b.Unsubscribe(context.Background(), "hot")
		start := time.Now()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.b.Subscribe(sctx, "hot")
		cancel()
		if d := time.Since(start); err != nil || d > 500*time.Millisecond {
			failures = append(failures, fmt.Sprintf("round %d: Subscribe took %v, err %v", i, d, err))
		}
		if err != nil {
			n.b.Unsubscribe(context.Background(), "hot")
			n.subscribe(t, "hot")
		}
	}
	if len(failures) > 0 {
		t.Fatalf("resubscribing a busy stream right after its last unsubscribe: %v", failures)
	}
}

// flood publishes ephemeral messages of a foreign node on stream from 8
// goroutines until the returned stop is called, and returns once n
// receives them.
func flood(t *testing.T, c *cluster, n *node, stream string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := "eother:" + string(make([]byte, 512))
			for ctx.Err() == nil {
				cmds := make([]rueidis.Completed, 0, 64)
				for range 64 {
					cmds = append(cmds, c.admin.B().Publish().Channel(n.b.channelName(stream)).Message(msg).Build())
				}
				c.admin.DoMulti(context.Background(), cmds...)
			}
		}()
	}
	stop = func() { cancel(); wg.Wait() }
	t.Cleanup(stop) // also when waitFor fails
	n.rec.waitFor(t, "flood arriving", func() bool { return len(n.rec.ephOf(stream)) > 100 })
	return stop
}
