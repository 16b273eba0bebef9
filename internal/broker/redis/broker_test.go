package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/internal/redistest"
	"github.com/huddle-rt/huddle/storage"
	redislog "github.com/huddle-rt/huddle/storage/redis"
)

const wait = 5 * time.Second

var keep = storage.Options{Size: 100, TTL: time.Minute}

// recorder is a broker.Handler that keeps what it was given.
type recorder struct {
	mu     sync.Mutex
	pubs   map[string][]delivered
	eph    map[string][]string
	lost   map[string][]broker.Lost
	change chan struct{} // signalled after every call
}

type delivered struct {
	epoch string
	pub   storage.Publication
}

func newRecorder() *recorder {
	return &recorder{
		pubs:   make(map[string][]delivered),
		eph:    make(map[string][]string),
		lost:   make(map[string][]broker.Lost),
		change: make(chan struct{}, 1),
	}
}

func (r *recorder) signal() {
	select {
	case r.change <- struct{}{}:
	default:
	}
}

func (r *recorder) HandlePublication(stream, epoch string, pub storage.Publication) {
	r.mu.Lock()
	r.pubs[stream] = append(r.pubs[stream], delivered{epoch, pub})
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) HandleEphemeral(stream string, payload []byte) {
	r.mu.Lock()
	r.eph[stream] = append(r.eph[stream], string(payload))
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) HandleLost(stream string, lost broker.Lost) {
	r.mu.Lock()
	r.lost[stream] = append(r.lost[stream], lost)
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) delivered(stream string) []delivered {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pubs[stream])
}

// has reports whether a publication with data was delivered for stream.
func (r *recorder) has(stream, data string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.pubs[stream] {
		if string(d.pub.Data) == data {
			return true
		}
	}
	return false
}

// offsets returns the offsets delivered for stream, in delivery order.
func (r *recorder) offsets(stream string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []uint64
	for _, d := range r.pubs[stream] {
		out = append(out, d.pub.Offset)
	}
	return out
}

func (r *recorder) ephOf(stream string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.eph[stream])
}

func (r *recorder) lostOf(stream string) []broker.Lost {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lost[stream])
}

// waitFor waits until cond holds for r.
func (r *recorder) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-r.change:
		case <-deadline.C:
			t.Fatalf("%s: not within %v", what, wait)
		}
	}
}

// node is one broker with its own clients, as one Huddle process has.
type node struct {
	b      *Broker
	rec    *recorder
	log    *redislog.Log
	client rueidis.Client
}

type cluster struct {
	url     string
	prefix  string
	sharded bool
	admin   rueidis.Client
}

func newCluster(t testing.TB, url string, sharded bool) *cluster {
	admin := redistest.Client(t, url)
	return &cluster{url: url, prefix: redistest.Prefix(t, admin), sharded: sharded, admin: admin}
}

func (c *cluster) node(t testing.TB, tune ...func(*Config)) *node {
	t.Helper()
	return c.nodeWith(t, newRecorder(), tune...)
}

// nodeWith is node with a handler of the caller's; node.rec is then nil
// unless h is a *recorder.
func (c *cluster) nodeWith(t testing.TB, h broker.Handler, tune ...func(*Config)) *node {
	t.Helper()
	client := redistest.Client(t, c.url)
	opt, err := rueidis.ParseURL(c.url)
	if err != nil {
		t.Fatal(err)
	}
	log := redislog.New(client, redislog.Config{Prefix: c.prefix, ShardedPubSub: c.sharded})
	rec, _ := h.(*recorder)
	cfg := Config{Prefix: c.prefix, Sharded: c.sharded, PubSub: opt, RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, f := range tune {
		f(&cfg)
	}
	b, err := New(cfg, Deps{Log: log, Client: client, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &node{b: b, rec: rec, log: log, client: client}
}

func (n *node) subscribe(t testing.TB, stream string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := n.b.Subscribe(ctx, stream); err != nil {
		t.Fatalf("Subscribe(%q): %v", stream, err)
	}
}

func (n *node) publish(t *testing.T, stream, data string) storage.Position {
	t.Helper()
	_, pos, err := n.b.Publish(t.Context(), stream, storage.Publication{Data: []byte(data), User: "u-" + data, Client: "c-" + data}, keep)
	if err != nil {
		t.Fatalf("Publish(%q): %v", stream, err)
	}
	return pos
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for o := from; o <= to; o++ {
		out = append(out, o)
	}
	return out
}

func forBoth(t *testing.T, f func(t *testing.T, sharded bool)) {
	for _, sharded := range []bool{false, true} {
		t.Run(fmt.Sprintf("sharded=%v", sharded), func(t *testing.T) { f(t, sharded) })
	}
}

// TestBroker_OneOrderOnEveryNode: three nodes publish to one stream at
// once; every node, the publishers included, delivers every publication
// once, in offset order, with what was published.
func TestBroker_OneOrderOnEveryNode(t *testing.T) {
	url := redistest.URL(t)
	forBoth(t, func(t *testing.T, sharded bool) {
		c := newCluster(t, url, sharded)
		nodes := []*node{c.node(t), c.node(t), c.node(t)}
		for _, n := range nodes {
			n.subscribe(t, "doc")
		}
		const each = 100
		var wg sync.WaitGroup
		errs := make(chan error, len(nodes))
		for i, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range each {
					data := fmt.Sprintf("n%d-%d", i, j)
					if _, _, err := n.b.Publish(context.Background(), "doc", storage.Publication{Data: []byte(data), User: "u", Client: data}, keep); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		want := seq(1, each*uint64(len(nodes)))
		for i, n := range nodes {
			n.rec.waitFor(t, fmt.Sprintf("node %d delivers %d publications", i, len(want)), func() bool { return len(n.rec.offsets("doc")) >= len(want) })
			if got := n.rec.offsets("doc"); !slices.Equal(got, want) {
				t.Fatalf("node %d delivered offsets %v, want 1..%d once each in order", i, got, len(want))
			}
		}
		// Every node saw the same publication at each offset.
		first := nodes[0].rec.delivered("doc")
		for i, n := range nodes[1:] {
			for k, d := range n.rec.delivered("doc") {
				f := first[k]
				if d.epoch != f.epoch || string(d.pub.Data) != string(f.pub.Data) || d.pub.Client != f.pub.Client || d.pub.User != "u" || d.pub.Time != f.pub.Time {
					t.Fatalf("node %d offset %d = %+v, node 0 has %+v", i+1, d.pub.Offset, d, f)
				}
			}
		}
		if got := nodes[0].rec.lostOf("doc"); len(got) != 0 {
			t.Errorf("HandleLost calls %v, want none", got)
		}
	})
}

// TestBroker_SubscribeReturnsWhenSubscribed: a publication made right after
// Subscribe returns reaches the subscriber, every time.
func TestBroker_SubscribeReturnsWhenSubscribed(t *testing.T) {
	url := redistest.URL(t)
	forBoth(t, func(t *testing.T, sharded bool) {
		c := newCluster(t, url, sharded)
		pub, sub := c.node(t), c.node(t)
		const streams = 100
		for i := range streams {
			stream := "s" + strconv.Itoa(i)
			sub.subscribe(t, stream)
			pub.publish(t, stream, "x")
		}
		for i := range streams {
			stream := "s" + strconv.Itoa(i)
			sub.rec.waitFor(t, "publication on "+stream, func() bool { return len(sub.rec.offsets(stream)) == 1 })
		}
	})
}

// TestBroker_SubscriptionCounts: the node stays subscribed while any local
// subscriber is left, unsubscribes from Redis after the last, and can
// subscribe again.
func TestBroker_SubscriptionCounts(t *testing.T) {
	url := redistest.URL(t)
	forBoth(t, func(t *testing.T, sharded bool) {
		c := newCluster(t, url, sharded)
		pub, sub := c.node(t), c.node(t)
		numsub := func() int64 {
			cmd := c.admin.B().PubsubNumsub().Channel(sub.b.channelName("doc")).Build()
			if sharded {
				cmd = c.admin.B().PubsubShardnumsub().Channel(sub.b.channelName("doc")).Build()
			}
			m, err := c.admin.Do(t.Context(), cmd).AsIntMap()
			if err != nil {
				t.Fatal(err)
			}
			return m[sub.b.channelName("doc")]
		}
		sub.subscribe(t, "doc")
		sub.subscribe(t, "doc")
		if err := sub.b.Unsubscribe(t.Context(), "doc"); err != nil {
			t.Fatal(err)
		}
		pub.publish(t, "doc", "1")
		sub.rec.waitFor(t, "publication with one subscriber left", func() bool { return len(sub.rec.offsets("doc")) == 1 })

		if err := sub.b.Unsubscribe(t.Context(), "doc"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(wait)
		for numsub() != 0 || sub.b.Stats().Streams != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("after the last Unsubscribe Redis counts %d subscribers of the channel, Stats %+v", numsub(), sub.b.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
		pub.publish(t, "doc", "2") // not delivered

		sub.subscribe(t, "doc")
		pub.publish(t, "doc", "3")
		sub.rec.waitFor(t, "publication after subscribing again", func() bool { return len(sub.rec.offsets("doc")) == 2 })
		if got := sub.rec.offsets("doc"); !slices.Equal(got, []uint64{1, 3}) {
			t.Errorf("offsets %v, want [1 3]", got)
		}
	})
}

// TestBroker_Ephemeral: an ephemeral message reaches the other subscribed
// nodes once, not its sender, not a node without subscribers.
func TestBroker_Ephemeral(t *testing.T) {
	url := redistest.URL(t)
	forBoth(t, func(t *testing.T, sharded bool) {
		c := newCluster(t, url, sharded)
		a, b, idle := c.node(t), c.node(t), c.node(t)
		a.subscribe(t, "w")
		b.subscribe(t, "w")
		a.b.PublishEphemeral("w", []byte("cursor:1"), false)
		b.b.PublishEphemeral("w", []byte("cursor:2"), false)
		a.rec.waitFor(t, "b's message at a", func() bool { return len(a.rec.ephOf("w")) == 1 })
		b.rec.waitFor(t, "a's message at b", func() bool { return len(b.rec.ephOf("w")) == 1 })
		// A publication after them is delivered after them on the same
		// channel: by then any echo would have arrived too.
		a.publish(t, "w", "p")
		a.rec.waitFor(t, "publication at a", func() bool { return len(a.rec.offsets("w")) == 1 })
		b.rec.waitFor(t, "publication at b", func() bool { return len(b.rec.offsets("w")) == 1 })
		if got := a.rec.ephOf("w"); !slices.Equal(got, []string{"cursor:2"}) {
			t.Errorf("a got %q, want only b's", got)
		}
		if got := b.rec.ephOf("w"); !slices.Equal(got, []string{"cursor:1"}) {
			t.Errorf("b got %q, want only a's", got)
		}
		if got := idle.rec.ephOf("w"); len(got) != 0 {
			t.Errorf("a node without subscribers got %q", got)
		}
	})
}

// killPubSub disconnects every pub/sub client of the server, as a network
// failure between a node and Redis would; commands go on working.
func killPubSub(t *testing.T, admin rueidis.Client) {
	t.Helper()
	if err := admin.Do(t.Context(), admin.B().ClientKill().TypePubsub().Build()).Error(); err != nil {
		t.Fatal(err)
	}
}

// TestBroker_FillsGapAfterBreak: publications made while a node's
// subscription was broken reach it from history once it is subscribed
// again, before later ones, with no loss reported but that of ephemeral
// messages.
func TestBroker_FillsGapAfterBreak(t *testing.T) {
	url := redistest.URL(t)
	forBoth(t, func(t *testing.T, sharded bool) {
		c := newCluster(t, url, sharded)
		pub := c.node(t)
		// A long pause before subscribing again, so the publications below
		// surely fall into the break.
		sub := c.node(t, func(cfg *Config) { cfg.RetryMin, cfg.RetryMax = 400*time.Millisecond, 400*time.Millisecond })
		sub.subscribe(t, "doc")
		pub.publish(t, "doc", "1")
		sub.rec.waitFor(t, "first publication", func() bool { return len(sub.rec.offsets("doc")) == 1 })

		killPubSub(t, c.admin)
		for i := 2; i <= 4; i++ {
			pub.publish(t, "doc", strconv.Itoa(i))
		}
		sub.rec.waitFor(t, "publications made during the break", func() bool { return len(sub.rec.offsets("doc")) >= 4 })
		pub.publish(t, "doc", "5")
		sub.rec.waitFor(t, "publication after the break", func() bool { return len(sub.rec.offsets("doc")) >= 5 })
		if got := sub.rec.offsets("doc"); !slices.Equal(got, seq(1, 5)) {
			t.Fatalf("offsets %v, want 1..5", got)
		}
		for _, d := range sub.rec.delivered("doc") {
			if want := strconv.Itoa(int(d.pub.Offset)); string(d.pub.Data) != want || d.pub.User != "u-"+want {
				t.Errorf("offset %d: %+v", d.pub.Offset, d.pub)
			}
		}
		if got := sub.rec.lostOf("doc"); !slices.Equal(got, []broker.Lost{broker.LostEphemeral}) {
			t.Errorf("HandleLost calls %v, want one LostEphemeral", got)
		}
		if s := sub.b.Stats(); s.Resubscribed != 1 || s.Lost != 0 {
			t.Errorf("Stats = %+v, want Resubscribed 1, Lost 0", s)
		}
	})
}

// TestBroker_ReportsLossWhenHistoryIsGone: when the stream's history was
// lost during the break (its epoch changed), the node reports the
// publications lost, then goes on delivering.
func TestBroker_ReportsLossWhenHistoryIsGone(t *testing.T) {
	url := redistest.URL(t)
	forBoth(t, func(t *testing.T, sharded bool) {
		c := newCluster(t, url, sharded)
		pub := c.node(t)
		sub := c.node(t, func(cfg *Config) { cfg.RetryMin, cfg.RetryMax = 400*time.Millisecond, 400*time.Millisecond })
		sub.subscribe(t, "doc")
		first := pub.publish(t, "doc", "1")
		sub.rec.waitFor(t, "first publication", func() bool { return len(sub.rec.offsets("doc")) == 1 })

		killPubSub(t, c.admin)
		// Redis lost the stream (an eviction, or a restart without
		// persistence): the next publication starts a new epoch.
		if err := c.admin.Do(t.Context(), c.admin.B().Del().Key(c.prefix+"history-meta:{doc}", c.prefix+"history:{doc}").Build()).Error(); err != nil {
			t.Fatal(err)
		}
		second := pub.publish(t, "doc", "2")
		if second.Epoch == first.Epoch || second.Offset != 1 {
			t.Fatalf("after deleting the history: %+v, want offset 1 in a new epoch", second)
		}
		sub.rec.waitFor(t, "loss reported", func() bool {
			return slices.Contains(sub.rec.lostOf("doc"), broker.LostPublications|broker.LostEphemeral)
		})
		third := pub.publish(t, "doc", "3")
		sub.rec.waitFor(t, "publication after the loss", func() bool { return slices.Contains(sub.rec.offsets("doc"), third.Offset) })
		all := sub.rec.delivered("doc")
		last := all[len(all)-1]
		if last.epoch != third.Epoch || string(last.pub.Data) != "3" {
			t.Errorf("last delivered %+v, want %+v", last, third)
		}
	})
}

// TestBroker_LiveGap: a publication that skips offsets on a healthy
// subscription (something lost it on the way) makes the node read history;
// when history does not hold the missing ones either, the loss is reported.
func TestBroker_LiveGap(t *testing.T) {
	url := redistest.URL(t)
	c := newCluster(t, url, false)
	pub, sub := c.node(t), c.node(t)
	sub.subscribe(t, "doc")
	pos := pub.publish(t, "doc", "1")
	sub.rec.waitFor(t, "first publication", func() bool { return len(sub.rec.offsets("doc")) == 1 })

	// An envelope from nowhere, five offsets ahead.
	env := redislog.AppendEnvelope(nil, redislog.Envelope{
		Position: storage.Position{Epoch: pos.Epoch, Offset: pos.Offset + 5},
		Time:     time.Now().UnixMilli(),
		Payload:  appendPubPayload(nil, "u", "c", []byte("ghost")),
	})
	if err := c.admin.Do(t.Context(), c.admin.B().Publish().Channel(sub.b.channelName("doc")).Message(string(env)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	sub.rec.waitFor(t, "loss reported", func() bool { return len(sub.rec.lostOf("doc")) == 1 })
	if got := sub.rec.lostOf("doc"); got[0]&broker.LostPublications == 0 {
		t.Errorf("HandleLost(%v), want LostPublications", got[0])
	}
	if s := sub.b.Stats(); s.Gaps != 1 || s.Lost != 1 {
		t.Errorf("Stats = %+v, want Gaps 1, Lost 1", s)
	}
}

// TestBroker_LiveGapFilled: a gap that history holds is filled without a
// loss.
func TestBroker_LiveGapFilled(t *testing.T) {
	url := redistest.URL(t)
	c := newCluster(t, url, false)
	sub := c.node(t)
	sub.subscribe(t, "doc")
	// Append without publishing: the node never hears of 1..3.
	for i := 1; i <= 3; i++ {
		if _, _, err := sub.log.Append(t.Context(), "doc", storage.Publication{Data: []byte(strconv.Itoa(i))}, keep); err != nil {
			t.Fatal(err)
		}
	}
	c.node(t).publish(t, "doc", "4")
	sub.rec.waitFor(t, "the gap filled", func() bool { return len(sub.rec.offsets("doc")) >= 4 })
	if got := sub.rec.offsets("doc"); !slices.Equal(got, seq(1, 4)) {
		t.Errorf("offsets %v, want 1..4", got)
	}
	if got := sub.rec.lostOf("doc"); len(got) != 0 {
		t.Errorf("HandleLost calls %v, want none", got)
	}
}

// TestBroker_LateLiveDuplicateDropped: a gap fill can read a publication
// from history before its own message arrives on the channel; that message
// is then not handed over a second time. (Seen in CI after a Redis restart
// as offsets [1 2 2].)
func TestBroker_LateLiveDuplicateDropped(t *testing.T) {
	c := newCluster(t, redistest.URL(t), false)
	sub := c.node(t)
	sub.subscribe(t, "doc")
	pos := c.node(t).publish(t, "doc", "1")
	sub.rec.waitFor(t, "the publication", func() bool { return len(sub.rec.offsets("doc")) == 1 })
	sub.b.mu.Lock()
	ch := sub.b.channels["doc"]
	sub.b.mu.Unlock()
	ch.onPub(pos.Epoch, storage.Publication{Offset: 1, Data: []byte("1")}) // the late message
	c.node(t).publish(t, "doc", "2")
	sub.rec.waitFor(t, "the second publication", func() bool { return len(sub.rec.offsets("doc")) >= 2 })
	if got := sub.rec.offsets("doc"); !slices.Equal(got, seq(1, 2)) {
		t.Errorf("offsets %v, want 1..2", got)
	}
}

// TestBroker_RedisDown: while Redis is down, Publish and Subscribe fail
// at once with storage.ErrUnavailable; once it is back (with its data, as
// with persistence on), the nodes subscribe again and nothing is lost.
func TestBroker_RedisDown(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	c := newCluster(t, srv.URL(), false)
	pub, sub := c.node(t), c.node(t)
	sub.subscribe(t, "doc")
	pub.publish(t, "doc", "1")
	sub.rec.waitFor(t, "first publication", func() bool { return len(sub.rec.offsets("doc")) == 1 })

	srv.Kill()
	_, _, err := pub.b.Publish(t.Context(), "doc", storage.Publication{Data: []byte("lost")}, keep)
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Publish while Redis is down: %v, want ErrUnavailable", err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	err = sub.b.Subscribe(ctx, "other")
	cancel()
	if !errors.Is(err, storage.ErrUnavailable) || time.Since(start) > wait/2 {
		t.Errorf("Subscribe while Redis is down: %v after %v, want ErrUnavailable at once", err, time.Since(start))
	}
	_ = sub.b.Unsubscribe(t.Context(), "other")
	pub.b.PublishEphemeral("doc", []byte("dropped"), false) // must not block

	srv.Restart()
	// Publishing resumes as soon as the command client reconnects.
	deadline := time.Now().Add(wait)
	for {
		_, _, err := pub.b.Publish(t.Context(), "doc", storage.Publication{Data: []byte("2")}, keep)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish after Redis came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pub.publish(t, "doc", "3")
	sub.rec.waitFor(t, "publications after the restart", func() bool { return len(sub.rec.offsets("doc")) >= 3 })
	if got := sub.rec.offsets("doc"); !slices.Equal(got, seq(1, 3)) {
		t.Errorf("offsets %v, want 1..3", got)
	}
	for _, l := range sub.rec.lostOf("doc") {
		if l&broker.LostPublications != 0 {
			t.Errorf("publications reported lost after a restart that kept the data")
		}
	}
}

// TestBroker_Close: Close ends every goroutine and fails later Subscribes.
func TestBroker_Close(t *testing.T) {
	c := newCluster(t, redistest.URL(t), false)
	n := c.node(t)
	n.subscribe(t, "a")
	n.subscribe(t, "b")
	n.b.PublishEphemeral("a", []byte("x"), false)
	if err := n.b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.b.Subscribe(t.Context(), "a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if err := n.b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestPubPayload(t *testing.T) {
	for _, tc := range []struct{ user, client, data string }{
		{"", "", ""},
		{"alice", "c1", "\x81\xa1k\x01"},
		{"with:colon", "", "data:with:colons"},
		{string(make([]byte, 300)), "x", "\x00"},
	} {
		env := redislog.Envelope{Position: storage.Position{Epoch: "e", Offset: 7}, Time: 42, Payload: appendPubPayload(nil, tc.user, tc.client, []byte(tc.data))}
		p, err := decodePub(env)
		if err != nil {
			t.Fatalf("%q: %v", tc.user, err)
		}
		if p.User != tc.user || p.Client != tc.client || string(p.Data) != tc.data || p.Offset != 7 || p.Time != 42 {
			t.Errorf("decodePub = %+v, want %+v", p, tc)
		}
	}
	for _, bad := range []string{"\x05ab", "\x80", "\x01a\x09"} {
		if _, err := decodePub(redislog.Envelope{Payload: []byte(bad)}); !errors.Is(err, errBadPayload) {
			t.Errorf("decodePub(%q) = %v, want errBadPayload", bad, err)
		}
	}
}

// TestBroker_Churn: local subscribers of a few streams come and go at
// once from many goroutines. Whoever holds a subscription receives what is
// published meanwhile (Subscribe never returns early, even when it revives
// a channel its last subscriber was just leaving), and once everyone has
// left the node is subscribed to nothing.
func TestBroker_Churn(t *testing.T) {
	c := newCluster(t, redistest.URL(t), false)
	pub, sub := c.node(t), c.node(t)
	streams := []string{"a", "b", "c"}
	const workers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				stream := streams[(w+r)%len(streams)]
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				err := sub.b.Subscribe(ctx, stream)
				cancel()
				if err != nil {
					errs <- err
					return
				}
				marker := fmt.Sprintf("w%d-r%d", w, r)
				if _, _, err := pub.b.Publish(context.Background(), stream, storage.Publication{Data: []byte(marker)}, keep); err != nil {
					errs <- err
					return
				}
				deadline := time.Now().Add(wait)
				for !sub.rec.has(stream, marker) {
					if time.Now().After(deadline) {
						errs <- fmt.Errorf("%s on %s never arrived while subscribed", marker, stream)
						return
					}
					time.Sleep(time.Millisecond)
				}
				_ = sub.b.Unsubscribe(context.Background(), stream)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for {
		var subscribed int64
		for _, s := range streams {
			m, err := c.admin.Do(t.Context(), c.admin.B().PubsubNumsub().Channel(sub.b.channelName(s)).Build()).AsIntMap()
			if err != nil {
				t.Fatal(err)
			}
			subscribed += m[sub.b.channelName(s)]
		}
		if subscribed == 0 && sub.b.Stats().Streams == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after everyone left: %d Redis subscriptions, Stats %+v", subscribed, sub.b.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, s := range streams {
		if got := sub.rec.lostOf(s); len(got) != 0 {
			t.Errorf("%s: HandleLost calls %v", s, got)
		}
	}
}

// TestBroker_RedisCluster runs the broker on a real three-master Redis
// Cluster: sharded pub/sub routed to each stream's slot, publications of
// streams spread over the slots in one order on every node, ephemeral
// messages, and subscriptions confirmed before Subscribe returns.
func TestBroker_RedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	servers := redistest.StartCluster(t, 3)
	c := newCluster(t, servers[0].URL(), true)
	if mode := c.admin.Mode(); mode != rueidis.ClientModeCluster {
		t.Fatalf("client mode %q, want cluster", mode)
	}
	nodes := []*node{c.node(t), c.node(t), c.node(t)}
	streams := make([]string, 12)
	for i := range streams {
		streams[i] = "doc:" + strconv.Itoa(i)
		for _, n := range nodes {
			n.subscribe(t, streams[i])
		}
		nodes[i%3].publish(t, streams[i], "first") // right after Subscribe returned
	}
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				stream := streams[(i+j)%len(streams)]
				if _, _, err := n.b.Publish(context.Background(), stream, storage.Publication{Data: []byte("x")}, keep); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	nodes[0].b.PublishEphemeral(streams[5], []byte("cursor"), false)
	total := 0
	for _, s := range streams {
		top, err := nodes[0].log.Top(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		total += int(top.Offset)
		for k, n := range nodes {
			n.rec.waitFor(t, fmt.Sprintf("node %d: %d publications of %s", k, top.Offset, s), func() bool { return len(n.rec.offsets(s)) >= int(top.Offset) })
			if got := n.rec.offsets(s); !slices.Equal(got, seq(1, top.Offset)) {
				t.Errorf("node %d, %s: offsets %v, want 1..%d", k, s, got, top.Offset)
			}
		}
	}
	if total != len(streams)+60 {
		t.Errorf("%d publications stored, want %d", total, len(streams)+60)
	}
	for k, n := range nodes[1:] {
		n.rec.waitFor(t, fmt.Sprintf("node %d: the ephemeral message", k+1), func() bool { return len(n.rec.ephOf(streams[5])) == 1 })
	}
}

// TestBroker_PublishBatch publishes a batch of 1,000 items over four
// streams from one node: both nodes deliver each stream's items in batch
// order with contiguous offsets, as the results say.
func TestBroker_PublishBatch(t *testing.T) {
	url := redistest.URL(t)
	forBoth(t, func(t *testing.T, sharded bool) {
		c := newCluster(t, url, sharded)
		a, b := c.node(t), c.node(t)
		streams := []string{"s0", "s1", "s2", "s3"}
		for _, s := range streams {
			a.subscribe(t, s)
			b.subscribe(t, s)
		}
		items := make([]broker.Item, 1000)
		for i := range items {
			items[i] = broker.Item{Stream: streams[i%4], Pub: storage.Publication{Data: []byte(strconv.Itoa(i)), User: "u", Client: "c"}, Opts: storage.Options{Size: 1000}}
		}
		res, err := a.b.PublishBatch(t.Context(), items)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if want := uint64(i/4 + 1); r.Err != nil || r.Pub.Offset != want || r.Pos.Offset != want {
				t.Fatalf("item %d: %+v, want offset %d", i, r, want)
			}
		}
		for _, n := range []*node{a, b} {
			for k, s := range streams {
				n.rec.waitFor(t, s+" delivered", func() bool { return len(n.rec.delivered(s)) >= 250 })
				for j, d := range n.rec.delivered(s) {
					if d.pub.Offset != uint64(j+1) || string(d.pub.Data) != strconv.Itoa(4*j+k) || d.pub.User != "u" || d.epoch != res[k].Pos.Epoch {
						t.Fatalf("%s delivery %d: %+v in epoch %s", s, j, d.pub, d.epoch)
					}
				}
			}
		}
	})
}

// TestBroker_PublishBatch_Failure breaks one stream's history: its first
// item fails, its later ones are skipped, and the other streams' items,
// before and after, are stored and delivered.
func TestBroker_PublishBatch_Failure(t *testing.T) {
	c := newCluster(t, redistest.URL(t), false)
	a := c.node(t)
	a.subscribe(t, "ok")
	if err := c.admin.Do(t.Context(), c.admin.B().Set().Key(c.prefix+"history-meta:{bad}").Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	items := []broker.Item{{Stream: "ok"}, {Stream: "bad"}, {Stream: "ok"}, {Stream: "bad"}}
	for i := range items {
		items[i].Pub.Data = []byte(strconv.Itoa(i))
		items[i].Opts = keep
	}
	res, err := a.b.PublishBatch(t.Context(), items)
	if err == nil || !strings.HasPrefix(err.Error(), "item 1: ") || errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("error %v, want item 1's refusal", err)
	}
	if res[0].Err != nil || res[0].Pub.Offset != 1 || res[2].Err != nil || res[2].Pub.Offset != 2 {
		t.Errorf("the other stream's items: %+v, %+v", res[0], res[2])
	}
	if res[1].Err == nil || errors.Is(res[1].Err, broker.ErrSkipped) || !errors.Is(res[3].Err, broker.ErrSkipped) {
		t.Errorf("the broken stream's items: %v, %v", res[1].Err, res[3].Err)
	}
	a.rec.waitFor(t, "ok delivered", func() bool { return len(a.rec.offsets("ok")) == 2 })
}
