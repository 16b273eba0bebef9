package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// bigPayload is a publication of about n bytes whose data is
// {"seq": seq, "pad": "xxx..."}.
func bigPayload(seq, n int) string {
	return fmt.Sprintf(`{"seq":%d,"pad":"%s"}`, seq, strings.Repeat("x", n))
}

// publishBig publishes count publications of about size bytes to stream,
// one API call each (a call's body is bounded), with seqs first...
func publishBig(t *testing.T, h *harness, stream string, first, count, size int) {
	t.Helper()
	for i := range count {
		code, body := apiPublishT(t, h, fmt.Sprintf(`{"stream":%q,"data":%s}`, stream, bigPayload(first+i, size)))
		if code != http.StatusOK {
			t.Fatalf("publish %d: %d %s", first+i, code, body)
		}
	}
}

// collectRecovered reads what a recovering subscribe sends: subscribed, then
// the missed publications that did not fit in it as pub messages. It
// returns the offsets in the order they came, and fails on anything else
// (a disconnect in particular).
func collectRecovered(t *testing.T, c *wsclient.Client, stream string, want int) (*protocol.Subscribed, []uint64) {
	t.Helper()
	s := nextAs[*protocol.Subscribed](t, c)
	var got []uint64
	for _, p := range s.Pubs {
		got = append(got, p.Offset)
	}
	for len(got) < want {
		m, err := c.Next(wait)
		if err != nil {
			code, reason := c.CloseCode()
			t.Fatalf("after %d of %d publications: %v (close %d %q)", len(got), want, err, code, reason)
		}
		switch m := m.(type) {
		case *protocol.Pub:
			if m.S != stream {
				t.Fatalf("pub of stream %q", m.S)
			}
			if seqOf(t, m.Data) != int(m.Offset) {
				t.Fatalf("pub %d carries seq %d", m.Offset, seqOf(t, m.Data))
			}
			got = append(got, m.Offset)
		case *protocol.Ping:
		default:
			t.Fatalf("after %d of %d publications: got %s %+v", len(got), want, m.Type(), m)
		}
	}
	return s, got
}

// Issue 13, item 1: missed publications that together exceed the queue
// bound are all delivered to a client that reads, in order, on every
// reconnect: the server sends them as the socket drains instead of ending
// the connection with 4008.
func TestRecoveryOfLargePublications(t *testing.T) {
	h := start(t) // defaults: 1 MiB messages, 4 MiB queue
	const n, size = 5, 1000_000
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codecName(codec), func(t *testing.T) {
			stream := "big:" + codecName(codec)
			c := dialUser(t, h, "rita", codecOpts(codec))
			s := subscribe(t, c, 1, stream, nil)
			c.Close()
			publishBig(t, h, stream, 1, n, size)
			for round := range 3 {
				c := dialUser(t, h, "rita", codecOpts(codec))
				if err := c.Send(&protocol.Subscribe{ID: 2, S: stream, Recover: &protocol.Position{Epoch: s.Epoch, Offset: 0}}); err != nil {
					t.Fatal(err)
				}
				// Each round misses the big ones and the earlier rounds' small ones.
				missed := n + round
				r, got := collectRecovered(t, c, stream, missed)
				if r.Recovered == nil || !*r.Recovered || r.Offset != uint64(missed) {
					t.Fatalf("round %d: subscribed recovered=%v offset=%d", round, r.Recovered, r.Offset)
				}
				for i, off := range got {
					if off != uint64(i+1) {
						t.Fatalf("round %d: offsets %v, want 1..%d in order", round, got, missed)
					}
				}
				// Live publications follow, exactly once.
				publishSeq(t, h, stream, n+1+round, 1)
				p := nextAs[*protocol.Pub](t, c)
				if p.Offset != uint64(n+1+round) {
					t.Fatalf("round %d: live pub offset %d, want %d", round, p.Offset, n+1+round)
				}
				wantAlive(t, c)
				c.Close()
			}
		})
	}
}

// Issue 13, item 1: a history request over large publications answers a
// page bounded in bytes with more: true, and the client gets the rest by
// asking again from the last offset.
func TestHistoryPagesLargePublications(t *testing.T) {
	h := start(t)
	const n, size = 5, 1000_000
	stream := "bighist:1"
	publishBig(t, h, stream, 1, n, size)
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codecName(codec), func(t *testing.T) {
			c := dialUser(t, h, "rita", codecOpts(codec))
			var got []uint64
			var since *protocol.Position
			for page := 0; len(got) < n; page++ {
				if page > n {
					t.Fatalf("no progress: %v after %d pages", got, page)
				}
				if err := c.Send(&protocol.HistoryRequest{ID: uint64(page + 1), S: stream, Limit: n, Since: since}); err != nil {
					t.Fatal(err)
				}
				m, err := c.Next(wait)
				if err != nil {
					code, reason := c.CloseCode()
					t.Fatalf("page %d: %v (close %d %q)", page, err, code, reason)
				}
				hr, ok := m.(*protocol.History)
				if !ok {
					t.Fatalf("page %d: got %s %+v", page, m.Type(), m)
				}
				if len(hr.Pubs) == 0 {
					t.Fatalf("page %d is empty (more=%v)", page, hr.More)
				}
				for _, p := range hr.Pubs {
					got = append(got, p.Offset)
				}
				if hr.More != (len(got) < n) {
					t.Fatalf("page %d: more=%v with %d of %d read", page, hr.More, len(got), n)
				}
				if len(got) < n && len(hr.Pubs) == n {
					t.Fatal("a 5 MB page was sent in one reply")
				}
				since = &protocol.Position{Epoch: hr.Epoch, Offset: got[len(got)-1]}
			}
			for i, off := range got {
				if off != uint64(i+1) {
					t.Fatalf("offsets %v, want 1..%d", got, n)
				}
			}
			wantAlive(t, c)
		})
	}
}

// Issue 13, item 2: history requests over large publications from clients
// that do not read cannot make the server hold more than about a queue's
// worth per connection, and a bystander's round trips stay quick.
func TestHistoryRequestsBoundedInFlight(t *testing.T) {
	h := start(t)
	const n, size, attackers = 40, 1000_000, 4
	stream := "amplify:1"
	publishBig(t, h, stream, 1, n, size)
	before := heapInUse()
	for i := range attackers {
		a := dialRaw(t, h.URL, wsclient.Options{NoReader: true, Subprotocols: []string{protocol.SubprotocolJSON}})
		msgs := []protocol.Message{&protocol.Connect{ID: 1, Token: token(t, "mallory")}}
		for id := range 50 { // a queue's worth of waiting requests, and more
			msgs = append(msgs, &protocol.HistoryRequest{ID: uint64(id + 2), S: stream, Limit: 1000})
		}
		if err := a.Send(msgs...); err != nil {
			t.Fatalf("attacker %d: %v", i, err)
		}
	}
	probe := dialUser(t, h, "bob")
	var worst time.Duration
	for range 20 {
		t0 := time.Now()
		wantAlive(t, probe)
		worst = max(worst, time.Since(t0))
		time.Sleep(20 * time.Millisecond)
	}
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew by %d MB with %d attackers; probe's worst round trip %v", grown>>20, attackers, worst)
	// Each attacker may hold about its queue bound (4 MiB) in replies and
	// the kernel a few MB more; 40 MB of history answered to four clients
	// in full would be 160 MB and more as JSON.
	if grown > 60<<20 {
		t.Fatalf("heap grew by %d MB", grown>>20)
	}
	if worst > time.Second {
		t.Fatalf("a bystander's ping took %v", worst)
	}
}

// Issue 13, item 4: presence joins per connection are bounded like
// subscriptions; the excess gets error 4006 and the connection stays.
func TestMaxJoins(t *testing.T) {
	h := start(t, func(o *harnessOpts) { o.cfg.MaxSubscriptions = 3 })
	c := dialUser(t, h, "jo")
	for i := range 3 {
		if err := c.Send(&protocol.Join{ID: uint64(i + 1), S: fmt.Sprintf("room:%d", i), State: protocol.MustRaw(map[string]any{"i": i})}); err != nil {
			t.Fatal(err)
		}
		nextAs[*protocol.Ack](t, c)
	}
	if err := c.Send(&protocol.Join{ID: 9, S: "room:9", State: protocol.MustRaw(map[string]any{})}); err != nil {
		t.Fatal(err)
	}
	wantError(t, c, 9, protocol.CodeRateLimited)
	// Re-joining one already joined replaces the state and is not counted.
	if err := c.Send(&protocol.Join{ID: 10, S: "room:1", State: protocol.MustRaw(map[string]any{"i": 10})}); err != nil {
		t.Fatal(err)
	}
	nextAs[*protocol.Ack](t, c)
	// A leave makes room.
	if err := c.Send(&protocol.Leave{ID: 11, S: "room:0"}, &protocol.Join{ID: 12, S: "room:9", State: protocol.MustRaw(map[string]any{})}); err != nil {
		t.Fatal(err)
	}
	nextAs[*protocol.Ack](t, c)
	nextAs[*protocol.Ack](t, c)
}

// A presence snapshot larger than the connection's queue takes is refused
// with 4005 (and the subscribe without presence works), rather than queued
// and followed by 4008 on every resubscribe.
func TestPresenceSnapshotTooLarge(t *testing.T) {
	h := start(t, func(o *harnessOpts) { o.cfg.MaxQueue = 64 << 10 })
	const stream = "crowd:1"
	state := map[string]any{"bio": strings.Repeat("b", 3500)}
	for i := range 20 { // 20 × 3.5 KB, over the 48 KiB a reply may take
		m := dialUser(t, h, fmt.Sprintf("m%d", i))
		if err := m.Send(&protocol.Join{ID: 1, S: stream, State: protocol.MustRaw(state)}); err != nil {
			t.Fatal(err)
		}
		nextAs[*protocol.Ack](t, m)
	}
	c := dialUser(t, h, "late")
	for round := range 3 {
		if err := c.Send(&protocol.Subscribe{ID: uint64(10 + round), S: stream, Presence: true}); err != nil {
			t.Fatal(err)
		}
		e := wantError(t, c, uint64(10+round), protocol.CodeTooLarge)
		if !strings.Contains(e.Reason, "--max-queue") {
			t.Fatalf("reason %q does not say what to change", e.Reason)
		}
	}
	if err := c.Send(&protocol.WhoRequest{ID: 20, S: stream}); err != nil {
		t.Fatal(err)
	}
	wantError(t, c, 20, protocol.CodeTooLarge)
	if s := subscribe(t, c, 21, stream, nil); s.S != stream {
		t.Fatalf("subscribed %+v", s)
	}
	wantAlive(t, c)
}
