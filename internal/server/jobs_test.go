package server_test

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// Many small publications under a long stream name: a step is bounded by
// the publications' whole encoded cost, not only their data, so a reading
// client recovers 30,000 of them without a 4008.
func TestRecoveryOfManySmallPublications(t *testing.T) {
	h := start(t, func(o *harnessOpts) { o.rules = []string{"many*=sub,pub,history;history=30000"} })
	stream := "many" + strings.Repeat("x", 200)
	const n = 30000
	for first := 1; first <= n; first += 5000 {
		items := make([]string, 0, 5000)
		for i := range 5000 {
			items = append(items, fmt.Sprintf(`{"stream":%q,"data":%d}`, stream, first+i))
		}
		code, body := apiPublishT(t, h, "["+strings.Join(items, ",")+"]")
		if code != http.StatusOK {
			t.Fatalf("publish: %d %.200s", code, body)
		}
	}
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codecName(codec), func(t *testing.T) {
			c := dialUser(t, h, "rita", codecOpts(codec))
			if err := c.Send(&protocol.Subscribe{ID: 2, S: stream, Recover: &protocol.Position{Offset: 0}}); err != nil {
				t.Fatal(err)
			}
			got := 0
			for got < n {
				m, err := c.Next(wait)
				if err != nil {
					code, reason := c.CloseCode()
					t.Fatalf("after %d of %d: %v (close %d %q)", got, n, err, code, reason)
				}
				switch m := m.(type) {
				case *protocol.Subscribed:
					t.Logf("subscribed with %d pubs", len(m.Pubs))
					got += len(m.Pubs)
				case *protocol.Pub:
					got++
				case *protocol.Disconnect:
					t.Fatalf("after %d of %d: disconnect %d %q", got, n, m.Code, m.Reason)
				}
			}
		})
	}
}

// Subscribes that wait behind a connection that does not read hold no live
// publications: they register with the hub only when their turn comes.
func TestWaitingSubscribesHoldNothing(t *testing.T) {
	h := start(t, func(o *harnessOpts) { o.rules = []string{"nohist:*=sub,pub,history;history=off"} })
	publishBig(t, h, "amplify:1", 1, 20, 1000_000)
	const k = 20
	before := heapInUse()
	a, msgs := stalledClient(t, h)
	for i := range k {
		msgs = append(msgs, &protocol.Subscribe{ID: uint64(100 + i), S: fmt.Sprintf("nohist:%d", i)})
	}
	if err := a.Send(msgs...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	for i := range k {
		publishBig(t, h, fmt.Sprintf("nohist:%d", i), 1, 6, 400_000)
	}
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew by %d MB for one non-reading connection", grown>>20)
	// Buffered, the 48 MB published would mostly stay.
	if grown > 20<<20 {
		t.Fatalf("heap grew by %d MB", grown>>20)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// sub{join}+unsub pairs from a connection that does not read leave nothing
// behind: an unsubscribed waiting subscribe leaves the job list, which is
// bounded anyway.
func TestSubscribeJobsBounded(t *testing.T) {
	h := start(t)
	publishBig(t, h, "amplify:1", 1, 20, 1000_000)
	a, msgs := stalledClient(t, h)
	if err := a.Send(msgs...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	before := heapInUse()
	state := protocol.MustRaw(map[string]any{"pad": strings.Repeat("y", 4000)})
	const pairs = 3000
	for i := range pairs {
		if err := a.Send(&protocol.Subscribe{ID: uint64(100 + i), S: "room:1", Join: state}, &protocol.Unsubscribe{S: "room:1"}); err != nil {
			// The portable transport gives up on a socket that takes no
			// bytes for 2 s and closes it: also a bound.
			t.Logf("the server closed the connection after %d pairs: %v", i, err)
			break
		}
		if i%100 == 99 {
			time.Sleep(250 * time.Millisecond) // stay under the message rate
		}
	}
	time.Sleep(200 * time.Millisecond)
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew by %d MB after %d sub/unsub pairs, no reply queued", grown>>20, pairs)
	wantAlive(t, dialUser(t, h, "bob"))
	if grown > 8<<20 {
		t.Fatalf("heap grew by %d MB", grown>>20)
	}
}

// A sub{join} waiting behind a full queue does not join after a later leave
// of the same stream: requests take effect in the order they came.
func TestDeferredJoinKeepsOrder(t *testing.T) {
	h := start(t)
	publishBig(t, h, "amplify:1", 1, 20, 1000_000)
	a, msgs := stalledClient(t, h)
	msgs = append(msgs,
		&protocol.Subscribe{ID: 50, S: "room:7", Join: protocol.MustRaw(map[string]any{"v": 1})},
		&protocol.Leave{ID: 51, S: "room:7"})
	if err := a.Send(msgs...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	go func() { _, _ = io.Copy(io.Discard, a.Conn) }() // now read: the queue drains, the sub job runs
	time.Sleep(2 * time.Second)
	_, _, body := apiCall(t, h, "GET", "/api/presence/room:7", "Bearer "+testAPIKey, "")
	t.Logf("presence after sub{join}, leave: %s", body)
	if strings.Contains(string(body), "mallory") {
		t.Fatal("still a member after leave")
	}
}

// A sub{join} waiting behind a full queue joins with the identity of when
// it runs: a refresh that took op presence away in between prevents it.
func TestDeferredJoinAfterRevoke(t *testing.T) {
	h := start(t)
	publishBig(t, h, "amplify:1", 1, 20, 1000_000)
	a, msgs := stalledClient(t, h)
	noPresence := tokenWith(t, "mallory", time.Now().Add(time.Hour), map[string][]string{"*": {"sub", "pub", "history"}})
	msgs = append(msgs,
		&protocol.Subscribe{ID: 50, S: "room:8", Join: protocol.MustRaw(map[string]any{"v": 1})},
		&protocol.Refresh{ID: 51, Token: noPresence})
	if err := a.Send(msgs...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	go func() { _, _ = io.Copy(io.Discard, a.Conn) }()
	time.Sleep(2 * time.Second)
	_, _, body := apiCall(t, h, "GET", "/api/presence/room:8", "Bearer "+testAPIKey, "")
	t.Logf("presence after refresh without op presence: %s", body)
	if strings.Contains(string(body), "mallory") {
		t.Fatal("joined without op presence")
	}
}

// stalledClient connects a JSON client that never reads and returns it
// with the messages that fill its queue and its waiting requests (16
// history requests over the big publications of "amplify:1", which the
// caller publishes): messages appended to them wait behind those.
func stalledClient(t *testing.T, h *harness) (*wsclient.Client, []protocol.Message) {
	t.Helper()
	a := dialRaw(t, h.URL, wsclient.Options{NoReader: true, Subprotocols: []string{protocol.SubprotocolJSON}})
	msgs := []protocol.Message{&protocol.Connect{ID: 1, Token: token(t, "mallory")}}
	for id := range 16 {
		msgs = append(msgs, &protocol.HistoryRequest{ID: uint64(id + 2), S: "amplify:1", Limit: 1000})
	}
	return a, msgs
}
