package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/internal/redistest"
	"github.com/huddle-rt/huddle/storage"
	"github.com/huddle-rt/huddle/storage/storagetest"
)

func TestLog_Conformance(t *testing.T) {
	c := redistest.Client(t, redistest.URL(t))
	storagetest.Run(t, func(t *testing.T) storage.Log {
		return New(c, Config{Prefix: redistest.Prefix(t, c)})
	})
}

// newLog returns a Log with a key prefix of its own, and its client for
// looking at the keys directly.
func newLog(t *testing.T) (*Log, rueidis.Client) {
	t.Helper()
	c := redistest.Client(t, redistest.URL(t))
	return New(c, Config{Prefix: redistest.Prefix(t, c)}), c
}

var keep = storage.Options{Size: 100, TTL: time.Minute}

func mustAppend(t *testing.T, l *Log, stream, data string, opts storage.Options) storage.Position {
	t.Helper()
	_, pos, err := l.Append(t.Context(), stream, storage.Publication{Data: []byte(data)}, opts)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return pos
}

func mustRead(t *testing.T, l *Log, stream string, q storage.Query) storage.Result {
	t.Helper()
	res, err := l.Read(t.Context(), stream, q)
	if err != nil {
		t.Fatalf("Read(%+v): %v", q, err)
	}
	return res
}

func offsets(pubs []storage.Publication) []uint64 {
	out := make([]uint64, len(pubs))
	for i, p := range pubs {
		out[i] = p.Offset
	}
	return out
}

// seq returns from, from+1, ..., to; nil when from > to.
func seq(from, to uint64) []uint64 {
	var out []uint64
	for o := from; o <= to; o++ {
		out = append(out, o)
	}
	return out
}

func do(t *testing.T, c rueidis.Client, args ...string) rueidis.RedisResult {
	t.Helper()
	r := c.Do(t.Context(), c.B().Arbitrary(args...).Build())
	if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
		t.Fatalf("%v: %v", args, err)
	}
	return r
}

func TestLog_KeyNames(t *testing.T) {
	l := New(nil, Config{})
	if got, want := l.metaKey("doc:1"), "huddle:history-meta:{doc:1}"; got != want {
		t.Errorf("metaKey = %q, want %q", got, want)
	}
	if got, want := l.streamKey("doc:1"), "huddle:history:{doc:1}"; got != want {
		t.Errorf("streamKey = %q, want %q", got, want)
	}
	l = New(nil, Config{Prefix: "app:"})
	if got, want := l.streamKey("s"), "app:history:{s}"; got != want {
		t.Errorf("streamKey with prefix = %q, want %q", got, want)
	}
}

// TestLog_MetaVanished checks the recovery from a meta key that is gone
// while the stream's entries stay (evicted under memory pressure, or
// deleted): whichever call comes next starts a new epoch, offsets restart
// at 1, and none of the old entries is served under the new offsets.
func TestLog_MetaVanished(t *testing.T) {
	l, c := newLog(t)
	for _, next := range []string{"Append", "Top", "Read"} {
		t.Run(next, func(t *testing.T) {
			stream := "vanish-" + next
			var old storage.Position
			for i := range 5 {
				old = mustAppend(t, l, stream, fmt.Sprint("old", i), keep)
			}
			do(t, c, "DEL", l.metaKey(stream))

			switch next {
			case "Top":
				pos, err := l.Top(t.Context(), stream)
				if err != nil {
					t.Fatal(err)
				}
				if pos.Offset != 0 || pos.Epoch == old.Epoch {
					t.Fatalf("Top after the meta vanished = %+v, want offset 0 in a new epoch (old %q)", pos, old.Epoch)
				}
			case "Read":
				res := mustRead(t, l, stream, storage.Query{})
				if len(res.Pubs) != 0 || !res.Complete || res.Top.Offset != 0 || res.Top.Epoch == old.Epoch {
					t.Fatalf("Read after the meta vanished = %+v, want nothing, complete, offset 0 in a new epoch", res)
				}
			}
			pos := mustAppend(t, l, stream, "new", keep)
			if pos.Offset != 1 || pos.Epoch == old.Epoch {
				t.Fatalf("Append after the meta vanished = %+v, want offset 1 in a new epoch (old %q)", pos, old.Epoch)
			}
			res := mustRead(t, l, stream, storage.Query{})
			if len(res.Pubs) != 1 || string(res.Pubs[0].Data) != "new" || !res.Complete {
				t.Errorf("Read after restart = %+v, want only the new publication", res)
			}
			if n, _ := do(t, c, "XLEN", l.streamKey(stream)).AsInt64(); n != 1 {
				t.Errorf("stream holds %d entries after restart, want 1", n)
			}
			if _, err := l.Read(t.Context(), stream, storage.Query{After: old}); !errors.Is(err, storage.ErrEpochMismatch) {
				t.Errorf("Read from the old epoch: %v, want ErrEpochMismatch", err)
			}
		})
	}
}

// TestLog_StrayEntries checks that entries the meta does not account for
// (a stream ahead of its meta) are dropped instead of failing every later
// Append.
func TestLog_StrayEntries(t *testing.T) {
	l, c := newLog(t)
	const stream = "stray"
	mustAppend(t, l, stream, "a", keep)
	do(t, c, "XADD", l.streamKey(stream), "9-0", "d", "stray", "u", "", "c", "", "t", "0")
	pos := mustAppend(t, l, stream, "b", keep)
	if pos.Offset != 2 {
		t.Fatalf("Append over stray entries: offset %d, want 2", pos.Offset)
	}
	res := mustRead(t, l, stream, storage.Query{})
	if got := offsets(res.Pubs); !slices.Equal(got, []uint64{2}) || res.Complete {
		t.Errorf("Read = %v, Complete %v; want [2], incomplete", got, res.Complete)
	}
}

// TestLog_Bounds checks what the keys hold and how long they live.
func TestLog_Bounds(t *testing.T) {
	l, c := newLog(t)
	tests := []struct {
		name       string
		opts       []storage.Options // one Append with each, in turn
		wantLen    int64             // entries in the Redis stream
		streamPTTL time.Duration     // 0: the stream key must not exist
		metaPTTL   time.Duration
	}{
		{name: "size", opts: repeat(10, storage.Options{Size: 3, TTL: time.Minute}), wantLen: 3, streamPTTL: time.Minute, metaPTTL: storage.DefaultMetaTTL},
		{name: "size shrinks", opts: append(repeat(5, storage.Options{Size: 5}), storage.Options{Size: 2}), wantLen: 2, streamPTTL: storage.DefaultMetaTTL, metaPTTL: storage.DefaultMetaTTL},
		{name: "size zero", opts: append(repeat(3, storage.Options{Size: 5}), storage.Options{}), wantLen: 0, metaPTTL: storage.DefaultMetaTTL},
		{name: "meta TTL bounds the stream", opts: repeat(2, storage.Options{Size: 5, TTL: time.Hour, MetaTTL: time.Minute}), wantLen: 2, streamPTTL: time.Minute, metaPTTL: time.Minute},
		{name: "TTL bounds the stream", opts: repeat(2, storage.Options{Size: 5, TTL: time.Minute, MetaTTL: time.Hour}), wantLen: 2, streamPTTL: time.Minute, metaPTTL: time.Hour},
		{name: "sub-millisecond TTL", opts: repeat(1, storage.Options{Size: 5, TTL: time.Microsecond, MetaTTL: time.Hour}), wantLen: -1, streamPTTL: -1, metaPTTL: time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream := "bounds-" + tc.name
			for _, o := range tc.opts {
				mustAppend(t, l, stream, "x", o)
			}
			if tc.wantLen >= 0 {
				if n, _ := do(t, c, "XLEN", l.streamKey(stream)).AsInt64(); n != tc.wantLen {
					t.Errorf("XLEN = %d, want %d", n, tc.wantLen)
				}
			}
			checkPTTL(t, c, l.streamKey(stream), tc.streamPTTL)
			checkPTTL(t, c, l.metaKey(stream), tc.metaPTTL)
		})
	}
}

func repeat(n int, o storage.Options) []storage.Options {
	out := make([]storage.Options, n)
	for i := range out {
		out[i] = o
	}
	return out
}

// checkPTTL checks that key expires in about want; want 0 means the key
// must not exist, and a negative want skips the check.
func checkPTTL(t *testing.T, c rueidis.Client, key string, want time.Duration) {
	t.Helper()
	if want < 0 {
		return
	}
	ms, _ := do(t, c, "PTTL", key).AsInt64()
	if want == 0 {
		if ms != -2 {
			t.Errorf("PTTL %s = %d, want the key gone", key, ms)
		}
		return
	}
	got := time.Duration(ms) * time.Millisecond
	if got > want || got < want-5*time.Second {
		t.Errorf("PTTL %s = %v, want about %v", key, got, want)
	}
}

// TestLog_AgeBound checks the search for the oldest publication within the
// age bound, for every split of a stream into expired and live entries.
// The entries are written directly with their times, so nothing sleeps.
func TestLog_AgeBound(t *testing.T) {
	l, c := newLog(t)
	const ttl = time.Minute
	for _, n := range []int{1, 2, 3, 7, 16, 33} {
		for expired := 0; expired <= n; expired++ {
			t.Run(fmt.Sprintf("n=%d/expired=%d", n, expired), func(t *testing.T) {
				stream := fmt.Sprintf("age-%d-%d", n, expired)
				now := time.Now().UnixMilli()
				do(t, c, "HSET", l.metaKey(stream), "epoch", "e", "offset", strconv.Itoa(n), "ttl", strconv.FormatInt(ttl.Milliseconds(), 10))
				for o := 1; o <= n; o++ {
					at := now
					if o <= expired {
						at = now - 2*ttl.Milliseconds()
					}
					do(t, c, "XADD", l.streamKey(stream), fmt.Sprintf("%d-0", o), "d", fmt.Sprint(o), "u", "", "c", "", "t", strconv.FormatInt(at, 10))
				}

				res := mustRead(t, l, stream, storage.Query{})
				if got, want := offsets(res.Pubs), seq(uint64(expired)+1, uint64(n)); !slices.Equal(got, want) {
					t.Errorf("Read offsets = %v, want %v", got, want)
				}
				if want := expired == 0; res.Complete != want {
					t.Errorf("Read Complete = %v, want %v", res.Complete, want)
				}
				// From the last expired offset on, nothing is missing.
				res = mustRead(t, l, stream, storage.Query{After: storage.Position{Offset: uint64(expired)}})
				if got, want := offsets(res.Pubs), seq(uint64(expired)+1, uint64(n)); !slices.Equal(got, want) || !res.Complete {
					t.Errorf("Read after %d = %v, Complete %v; want %v, complete", expired, got, res.Complete, want)
				}
				res = mustRead(t, l, stream, storage.Query{Reverse: true, Limit: 2})
				want := seq(max(uint64(expired)+1, uint64(n-1)), uint64(n))
				slices.Reverse(want)
				if got := offsets(res.Pubs); !slices.Equal(got, want) {
					t.Errorf("Read newest 2 = %v, want %v", got, want)
				}
			})
		}
	}
}

// TestLog_ConcurrentNodes appends to one stream from many goroutines of two
// Logs with separate connections, as two nodes would.
func TestLog_ConcurrentNodes(t *testing.T) {
	const (
		writers = 8 // per node
		each    = 40
		total   = 2 * writers * each
	)
	url := redistest.URL(t)
	c1, c2 := redistest.Client(t, url), redistest.Client(t, url)
	prefix := redistest.Prefix(t, c1)
	nodes := []*Log{New(c1, Config{Prefix: prefix}), New(c2, Config{Prefix: prefix})}

	const stream = "concurrent"
	var (
		mu     sync.Mutex
		seen   = make(map[uint64]string, total)
		epochs = make(map[string]bool)
		wg     sync.WaitGroup
	)
	for n, l := range nodes {
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					d := fmt.Sprintf("n%d-w%d-%d", n, w, i)
					_, pos, err := l.Append(t.Context(), stream, storage.Publication{Data: []byte(d)}, storage.Options{Size: total, TTL: time.Minute})
					if err != nil {
						t.Errorf("Append: %v", err)
						return
					}
					mu.Lock()
					if prev, dup := seen[pos.Offset]; dup {
						t.Errorf("offset %d assigned to %q and %q", pos.Offset, prev, d)
					}
					seen[pos.Offset] = d
					epochs[pos.Epoch] = true
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(epochs) != 1 {
		t.Errorf("appends saw %d epochs, want 1", len(epochs))
	}
	res := mustRead(t, nodes[1], stream, storage.Query{})
	if got := offsets(res.Pubs); !slices.Equal(got, seq(1, total)) {
		t.Fatalf("Read offsets = %v..., want 1..%d", got[:min(len(got), 10)], total)
	}
	for _, p := range res.Pubs {
		if string(p.Data) != seen[p.Offset] {
			t.Errorf("offset %d holds %q, want %q", p.Offset, p.Data, seen[p.Offset])
		}
	}
}

// TestLog_AppendPublish subscribes on a dedicated connection and checks
// that every append's envelope arrives, in offset order, and decodes to
// what Append reported.
func TestLog_AppendPublish(t *testing.T) {
	for _, sharded := range []bool{false, true} {
		t.Run(fmt.Sprintf("sharded=%v", sharded), func(t *testing.T) {
			c := redistest.Client(t, redistest.URL(t))
			prefix := redistest.Prefix(t, c)
			l := New(c, Config{Prefix: prefix, ShardedPubSub: sharded})
			stream := "doc:1"
			channel := prefix + "pub:{" + stream + "}"

			sub, cancel := c.Dedicate()
			defer cancel()
			subscribed := make(chan struct{}, 1)
			msgs := make(chan string, 16)
			sub.SetPubSubHooks(rueidis.PubSubHooks{
				OnMessage: func(m rueidis.PubSubMessage) { msgs <- m.Message },
				OnSubscription: func(s rueidis.PubSubSubscription) {
					if s.Kind == "subscribe" || s.Kind == "ssubscribe" {
						subscribed <- struct{}{}
					}
				},
			})
			cmd := sub.B().Subscribe().Channel(channel).Build()
			if sharded {
				cmd = sub.B().Ssubscribe().Channel(channel).Build()
			}
			if err := sub.Do(t.Context(), cmd).Error(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-subscribed:
			case <-time.After(5 * time.Second):
				t.Fatal("no subscribe confirmation")
			}

			payloads := [][]byte{[]byte("plain"), []byte("with:colons:"), {0x00, 0xff, '\r', '\n', 0x81}, {}}
			for i, payload := range payloads {
				in := storage.Publication{Data: []byte(fmt.Sprint("data", i)), User: "u", Client: "c"}
				pub, pos, err := l.AppendPublish(t.Context(), stream, in, keep, channel, payload)
				if err != nil {
					t.Fatal(err)
				}
				var msg string
				select {
				case msg = <-msgs:
				case <-time.After(5 * time.Second):
					t.Fatalf("envelope #%d did not arrive", i)
				}
				env, err := DecodeEnvelope([]byte(msg))
				if err != nil {
					t.Fatalf("DecodeEnvelope(%q): %v", msg, err)
				}
				want := Envelope{Position: pos, Time: pub.Time, Payload: payload}
				if env.Position != want.Position || env.Time != want.Time || !bytes.Equal(env.Payload, want.Payload) {
					t.Errorf("envelope #%d = %+v, want %+v", i, env, want)
				}
				if enc := AppendEnvelope(nil, want); string(enc) != msg {
					t.Errorf("AppendEnvelope = %q, script published %q", enc, msg)
				}
				if pos.Offset != uint64(i+1) {
					t.Errorf("AppendPublish #%d offset %d, want %d", i, pos.Offset, i+1)
				}
			}
			// The publication was stored as by Append.
			res := mustRead(t, l, stream, storage.Query{})
			if got := offsets(res.Pubs); !slices.Equal(got, seq(1, uint64(len(payloads)))) {
				t.Errorf("Read offsets = %v", got)
			}
		})
	}
}

// TestLog_Unavailable checks that a client that cannot reach Redis yields
// storage.ErrUnavailable, and a canceled context does not.
func TestLog_Unavailable(t *testing.T) {
	c := redistest.Client(t, redistest.URL(t))
	c.Close() // Close twice is fine: the cleanup closes it again
	l := New(c, Config{})
	if _, _, err := l.Append(t.Context(), "s", storage.Publication{}, keep); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Append on a closed client: %v, want ErrUnavailable", err)
	}
	if _, err := l.Read(t.Context(), "s", storage.Query{}); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Read on a closed client: %v, want ErrUnavailable", err)
	}
	if _, err := l.Top(t.Context(), "s"); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Top on a closed client: %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Top(ctx, "s"); !errors.Is(err, context.Canceled) || errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Top with a canceled context: %v, want context.Canceled only", err)
	}
}

// batchItems returns n items spread round-robin over streams, with data
// "<stream>/<k>" where k counts the stream's items.
func batchItems(streams []string, n int) []Item {
	items := make([]Item, n)
	for i := range items {
		s := streams[i%len(streams)]
		items[i] = Item{Stream: s, Pub: storage.Publication{Data: []byte(s + "/" + strconv.Itoa(i/len(streams)))}, Opts: storage.Options{Size: n}, Channel: "ch:{" + s + "}"}
	}
	return items
}

func TestLog_AppendPublishBatch_Order(t *testing.T) {
	l, c := newLog(t)
	streams := []string{"a", "b", "c", "d", "e"}
	mustAppend(t, l, "c", "before", storage.Options{Size: 2000})
	items := batchItems(streams, 1000)
	res := l.AppendPublishBatch(t.Context(), items)
	if len(res) != len(items) {
		t.Fatalf("%d results for %d items", len(res), len(items))
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
		want := uint64(i/len(streams) + 1)
		if items[i].Stream == "c" {
			want++
		}
		if r.Pub.Offset != want || r.Pos.Offset != want || r.Pub.Time == 0 {
			t.Fatalf("item %d (%s): offset %d, pos %+v; want %d", i, items[i].Stream, r.Pub.Offset, r.Pos, want)
		}
	}
	for _, s := range streams {
		got := mustRead(t, l, s, storage.Query{})
		var data []string
		for _, p := range got.Pubs {
			data = append(data, string(p.Data))
		}
		var want []string
		if s == "c" {
			want = append(want, "before")
		}
		for k := range 200 {
			want = append(want, s+"/"+strconv.Itoa(k))
		}
		if !slices.Equal(data, want) {
			t.Errorf("stream %s holds %d publications, not the batch's in order: %.5q...", s, len(data), data)
		}
	}
	// The guards are gone once each stream's last item ran.
	keys, err := c.Do(t.Context(), c.B().Keys().Pattern(l.prefix+"batch:*").Build()).AsStrSlice()
	if err != nil || len(keys) != 0 {
		t.Errorf("guard keys left: %q, %v", keys, err)
	}
}

// TestLog_AppendPublishBatch_Failure breaks one stream's meta key: its
// first item fails with Redis's error, its later items are refused by the
// guard before they touch the keys, and the other streams' items, before
// and after, are stored in order.
func TestLog_AppendPublishBatch_Failure(t *testing.T) {
	l, c := newLog(t)
	if err := c.Do(t.Context(), c.B().Set().Key(l.metaKey("bad")).Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	items := batchItems([]string{"a", "bad", "b"}, 9)
	res := l.AppendPublishBatch(t.Context(), items)
	for i, r := range res {
		switch it := items[i]; {
		case it.Stream != "bad":
			if r.Err != nil || r.Pub.Offset != uint64(i/3+1) {
				t.Errorf("item %d (%s): offset %d, %v", i, it.Stream, r.Pub.Offset, r.Err)
			}
		case i == 1:
			if _, ok := rueidis.IsRedisErr(errors.Unwrap(r.Err)); !ok || errors.Is(r.Err, ErrSkipped) || errors.Is(r.Err, storage.ErrUnavailable) {
				t.Errorf("item 1: %v, want Redis's WRONGTYPE", r.Err)
			}
		default:
			if !errors.Is(r.Err, ErrSkipped) || errors.Is(r.Err, storage.ErrUnavailable) {
				t.Errorf("item %d: %v, want ErrSkipped", i, r.Err)
			}
		}
	}
	for _, s := range []string{"a", "b"} {
		if got := offsets(mustRead(t, l, s, storage.Query{}).Pubs); !slices.Equal(got, []uint64{1, 2, 3}) {
			t.Errorf("stream %s: offsets %v", s, got)
		}
	}
}

// TestLog_AppendPublishBatch_Guard fails an item by a guard value that its
// predecessor did not leave, as if the predecessor's script had failed:
// it and the stream's later items store nothing.
func TestLog_AppendPublishBatch_Guard(t *testing.T) {
	l, _ := newLog(t)
	mustAppend(t, l, "s", "first", keep)
	keys := []string{l.metaKey("s"), l.streamKey("s"), l.guardKey("s", "t")}
	args := append(l.appendArgs(storage.Publication{Data: []byte("x")}, keep, "", "", nil), "0", "1")
	_, _, err := parseAppend(storage.Publication{}, appendScript.Exec(t.Context(), l.client, keys, args))
	if !errors.Is(err, ErrSkipped) {
		t.Fatalf("append after a missing guard: %v, want ErrSkipped", err)
	}
	if got := mustRead(t, l, "s", storage.Query{}); got.Top.Offset != 1 || len(got.Pubs) != 1 {
		t.Fatalf("after a refused append: top %+v, %d pubs", got.Top, len(got.Pubs))
	}
}

// TestLog_AppendPublishBatch_Unavailable kills Redis while a large batch
// is in flight, after it stored some items: the items answered are a
// prefix of the batch, and every other one fails as unavailable, which
// means it may have been stored (rueidis fails a whole pipeline whose
// connection broke, even the replies it had read).
func TestLog_AppendPublishBatch_Unavailable(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.URL())
	l := New(c, Config{Prefix: redistest.Prefix(t, c)})
	items := batchItems([]string{"a", "b", "c"}, 30000)
	done := make(chan []Result)
	go func() { done <- l.AppendPublishBatch(context.Background(), items) }()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if n, _ := c.Do(t.Context(), c.B().Hget().Key(l.metaKey("a")).Field("offset").Build()).AsInt64(); n > 2000 {
			break
		}
	}
	srv.Kill()
	res := <-done
	srv.Restart()
	stored := 0
	for stored < len(res) && res[stored].Err == nil {
		stored++
	}
	for i, r := range res[stored:] {
		if !errors.Is(r.Err, storage.ErrUnavailable) {
			t.Fatalf("item %d after the first failure (%d): %v, want ErrUnavailable", stored+i, stored, r.Err)
		}
	}
	t.Logf("%d of %d items answered before Redis was killed", stored, len(items))
}

// TestLog_AppendPublishBatch_NoScript runs a batch on a Redis that does
// not know the script: the batch loads it and runs every item once.
func TestLog_AppendPublishBatch_NoScript(t *testing.T) {
	l, c := newLog(t)
	if err := c.Do(t.Context(), c.B().ScriptFlush().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	items := batchItems([]string{"a", "b"}, 10)
	for i, r := range l.AppendPublishBatch(t.Context(), items) {
		if r.Err != nil || r.Pub.Offset != uint64(i/2+1) {
			t.Fatalf("item %d: offset %d, %v", i, r.Pub.Offset, r.Err)
		}
	}
	if top := mustRead(t, l, "a", storage.Query{}).Top.Offset; top != 5 {
		t.Fatalf("stream a: top %d, want 5", top)
	}
}

// A document's keys never expire, its cap refuses rather than trims, its
// byte count follows compactions, and a batch stores it like Append.
func TestLog_Document(t *testing.T) {
	c := redistest.Client(t, redistest.URL(t))
	l := New(c, Config{Prefix: redistest.Prefix(t, c), MaxDocumentBytes: 1000})
	doc := storage.Options{Document: true}
	const stream = "doc:redis"
	pub := storage.Publication{Data: bytes.Repeat([]byte("x"), 72)} // 200 bytes counted
	var pos storage.Position
	for i := range 5 {
		var err error
		if _, pos, err = l.Append(t.Context(), stream, pub, doc); err != nil {
			t.Fatalf("append #%d: %v", i, err)
		}
	}
	if _, _, err := l.Append(t.Context(), stream, pub, doc); !errors.Is(err, storage.ErrDocumentFull) {
		t.Fatalf("append over the cap: %v, want ErrDocumentFull", err)
	}
	for _, key := range []string{l.metaKey(stream), l.streamKey(stream)} {
		ttl, err := c.Do(t.Context(), c.B().Pttl().Key(key).Build()).AsInt64()
		if err != nil || ttl != -1 {
			t.Fatalf("PTTL %s = %d, %v; want -1 (no expiry)", key, ttl, err)
		}
	}
	if ok, err := l.Compact(t.Context(), stream, pos, []byte("snap"), doc); !ok || err != nil {
		t.Fatalf("compact: %v %v", ok, err)
	}
	dbytes, err := c.Do(t.Context(), c.B().Hget().Key(l.metaKey(stream)).Field("dbytes").Build()).AsInt64()
	if err != nil || dbytes != int64(len("snap")+storage.PublicationOverhead) {
		t.Fatalf("dbytes after compact = %d, %v", dbytes, err)
	}
	if n, _ := c.Do(t.Context(), c.B().Xlen().Key(l.streamKey(stream)).Build()).AsInt64(); n != 0 {
		t.Fatalf("%d entries left after a compact at the top", n)
	}
	res := l.AppendPublishBatch(t.Context(), []Item{
		{Stream: stream, Pub: pub, Opts: doc, Channel: "c"},
		{Stream: stream, Pub: pub, Opts: doc, Channel: "c"},
	})
	for i, r := range res {
		if r.Err != nil || r.Pos.Offset != pos.Offset+uint64(i)+1 {
			t.Fatalf("batch item %d: %+v", i, r)
		}
	}
	got := mustRead(t, l, stream, storage.Query{})
	if !got.Snapshot || len(got.Pubs) != 3 || string(got.Pubs[0].Data) != "snap" || got.Pubs[2].Offset != pos.Offset+2 {
		t.Fatalf("read: snapshot %v, %d pubs", got.Snapshot, len(got.Pubs))
	}
}
