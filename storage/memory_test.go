package storage_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/storage"
	"github.com/huddle-rt/huddle/storage/storagetest"
)

func TestMemoryLog_Conformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Log {
		m := storage.NewMemoryLog()
		t.Cleanup(func() {
			if err := m.ConsistencyCheck(); err != nil {
				t.Error(err)
			}
			m.Close()
		})
		return m
	})
}

// fakeClock is a settable clock for MemoryLog.
type fakeClock struct {
	mu sync.Mutex // guards the following
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestLog returns a MemoryLog on a fake clock whose state is checked
// when the test ends.
func newTestLog(t *testing.T) (*storage.MemoryLog, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	m := storage.NewMemoryLogWithClock(clock.Now)
	t.Cleanup(func() {
		if err := m.ConsistencyCheck(); err != nil {
			t.Error(err)
		}
		m.Close()
	})
	return m, clock
}

func mustAppend(t *testing.T, l storage.Log, stream, data string, opts storage.Options) (storage.Publication, storage.Position) {
	t.Helper()
	pub, pos, err := l.Append(t.Context(), stream, storage.Publication{Data: []byte(data)}, opts)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return pub, pos
}

func mustRead(t *testing.T, l storage.Log, stream string, q storage.Query) storage.Result {
	t.Helper()
	res, err := l.Read(t.Context(), stream, q)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return res
}

func mustTop(t *testing.T, l storage.Log, stream string) storage.Position {
	t.Helper()
	pos, err := l.Top(t.Context(), stream)
	if err != nil {
		t.Fatalf("Top: %v", err)
	}
	return pos
}

func pubOffsets(pubs []storage.Publication) []uint64 {
	out := make([]uint64, len(pubs))
	for i, p := range pubs {
		out[i] = p.Offset
	}
	return out
}

func TestMemoryLog_MetaTTL(t *testing.T) {
	const metaTTL = time.Hour
	opts := storage.Options{Size: 10, MetaTTL: metaTTL}

	t.Run("kept just before expiry", func(t *testing.T) {
		m, clock := newTestLog(t)
		_, first := mustAppend(t, m, "s", "a", opts)
		clock.Advance(metaTTL - time.Nanosecond)
		if _, pos := mustAppend(t, m, "s", "b", opts); pos != (storage.Position{Epoch: first.Epoch, Offset: 2}) {
			t.Errorf("Append = %+v, want offset 2 in epoch %q", pos, first.Epoch)
		}
	})

	t.Run("each append extends it", func(t *testing.T) {
		m, clock := newTestLog(t)
		_, first := mustAppend(t, m, "s", "a", opts)
		for i := range 5 {
			clock.Advance(metaTTL / 2)
			if _, pos := mustAppend(t, m, "s", "x", opts); pos.Epoch != first.Epoch || pos.Offset != uint64(i+2) {
				t.Fatalf("Append #%d = %+v, want offset %d in epoch %q", i, pos, i+2, first.Epoch)
			}
		}
	})

	t.Run("append restarts with a new epoch", func(t *testing.T) {
		m, clock := newTestLog(t)
		mustAppend(t, m, "s", "a", opts)
		_, old := mustAppend(t, m, "s", "b", opts)
		clock.Advance(metaTTL)
		pub, pos := mustAppend(t, m, "s", "c", opts)
		if pos.Offset != 1 || pub.Offset != 1 || pos.Epoch == old.Epoch {
			t.Fatalf("Append after MetaTTL = %+v, want offset 1 in a new epoch", pos)
		}
		res := mustRead(t, m, "s", storage.Query{})
		if len(res.Pubs) != 1 || string(res.Pubs[0].Data) != "c" || !res.Complete {
			t.Errorf("Read after restart = %+v, want only the new publication", res)
		}
		if _, err := m.Read(t.Context(), "s", storage.Query{After: old}); err != storage.ErrEpochMismatch {
			t.Errorf("Read from the old epoch: error = %v, want ErrEpochMismatch", err)
		}
	})

	t.Run("read and top do not extend it", func(t *testing.T) {
		m, clock := newTestLog(t)
		_, old := mustAppend(t, m, "s", "a", opts)
		clock.Advance(metaTTL / 2)
		mustRead(t, m, "s", storage.Query{})
		mustTop(t, m, "s")
		clock.Advance(metaTTL / 2)
		pos := mustTop(t, m, "s")
		if pos.Epoch == old.Epoch || pos.Offset != 0 {
			t.Errorf("Top after MetaTTL = %+v, want offset 0 in a new epoch", pos)
		}
	})

	t.Run("top restarts and append keeps the epoch", func(t *testing.T) {
		m, clock := newTestLog(t)
		_, old := mustAppend(t, m, "s", "a", opts)
		clock.Advance(metaTTL)
		fresh := mustTop(t, m, "s")
		if fresh.Epoch == old.Epoch || fresh.Offset != 0 {
			t.Fatalf("Top after MetaTTL = %+v, want offset 0 in a new epoch", fresh)
		}
		if _, pos := mustAppend(t, m, "s", "b", opts); pos != (storage.Position{Epoch: fresh.Epoch, Offset: 1}) {
			t.Errorf("Append = %+v, want offset 1 in epoch %q", pos, fresh.Epoch)
		}
	})

	t.Run("meta created by top uses the default", func(t *testing.T) {
		m, clock := newTestLog(t)
		first := mustTop(t, m, "s")
		clock.Advance(storage.DefaultMetaTTL - time.Second)
		if pos := mustTop(t, m, "s"); pos != first {
			t.Fatalf("Top before DefaultMetaTTL = %+v, want %+v", pos, first)
		}
		clock.Advance(time.Second)
		if pos := mustTop(t, m, "s"); pos.Epoch == first.Epoch {
			t.Errorf("Top after DefaultMetaTTL kept epoch %q", pos.Epoch)
		}
	})

	t.Run("zero means the default", func(t *testing.T) {
		m, clock := newTestLog(t)
		_, first := mustAppend(t, m, "s", "a", storage.Options{Size: 1})
		clock.Advance(storage.DefaultMetaTTL - time.Second)
		if _, pos := mustAppend(t, m, "s", "b", storage.Options{Size: 1}); pos.Epoch != first.Epoch {
			t.Fatalf("Append before DefaultMetaTTL changed epoch")
		}
		clock.Advance(storage.DefaultMetaTTL)
		if _, pos := mustAppend(t, m, "s", "c", storage.Options{Size: 1}); pos.Epoch == first.Epoch || pos.Offset != 1 {
			t.Errorf("Append after DefaultMetaTTL = %+v, want offset 1 in a new epoch", pos)
		}
	})
}

func TestMemoryLog_TTL(t *testing.T) {
	m, clock := newTestLog(t)
	opts := storage.Options{Size: 10, TTL: 10 * time.Second}
	for range 3 {
		mustAppend(t, m, "s", "x", opts) // offsets 1, 2, 3 at 0s, 5s, 10s
		clock.Advance(5 * time.Second)
	}
	// Now 15s: offset 1 (0s) and offset 2 (5s) are 10s or more old.
	tests := []struct {
		name     string
		advance  time.Duration
		after    uint64
		want     []uint64
		complete bool
	}{
		{name: "each publication ages alone", after: 0, want: []uint64{3}},
		{name: "complete from the oldest kept", after: 2, want: []uint64{3}, complete: true},
		{name: "all expired", advance: 5 * time.Second, after: 0},
		{name: "at top after expiry", after: 3, complete: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock.Advance(tc.advance)
			res := mustRead(t, m, "s", storage.Query{After: storage.Position{Offset: tc.after}})
			if got := pubOffsets(res.Pubs); !slices.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
				t.Errorf("offsets = %v, want %v", got, tc.want)
			}
			if res.Complete != tc.complete {
				t.Errorf("Complete = %v, want %v", res.Complete, tc.complete)
			}
			if res.Top.Offset != 3 {
				t.Errorf("Top.Offset = %d, want 3", res.Top.Offset)
			}
		})
	}
}

func TestMemoryLog_Bounds(t *testing.T) {
	tests := []struct {
		name    string
		steps   []struct{ n, size int }
		want    []uint64
		wantCap int // the window's buffer capacity afterwards
	}{
		{name: "window starts small", steps: []struct{ n, size int }{{1, 100}}, want: []uint64{1}, wantCap: 8},
		{name: "window doubles", steps: []struct{ n, size int }{{9, 100}}, want: span(1, 9), wantCap: 16},
		{name: "window stops at size", steps: []struct{ n, size int }{{150, 100}}, want: span(51, 150), wantCap: 100},
		{name: "wraps around", steps: []struct{ n, size int }{{23, 5}}, want: span(19, 23), wantCap: 5},
		{name: "size shrinks", steps: []struct{ n, size int }{{10, 10}, {1, 3}}, want: span(9, 11), wantCap: 3},
		{name: "size grows", steps: []struct{ n, size int }{{10, 3}, {5, 10}}, want: span(8, 15), wantCap: 8},
		{name: "size drops to zero", steps: []struct{ n, size int }{{10, 10}, {1, 0}}, want: nil, wantCap: 0},
		{name: "negative size keeps none", steps: []struct{ n, size int }{{3, -1}}, want: nil, wantCap: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newTestLog(t)
			for _, st := range tc.steps {
				for range st.n {
					mustAppend(t, m, "s", "x", storage.Options{Size: st.size})
				}
			}
			res := mustRead(t, m, "s", storage.Query{})
			if got := pubOffsets(res.Pubs); !slices.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
				t.Errorf("offsets = %v, want %v", got, tc.want)
			}
			if got := m.WindowCap("s"); got != tc.wantCap {
				t.Errorf("window capacity = %d, want %d", got, tc.wantCap)
			}
		})
	}
}

func TestMemoryLog_Sweep(t *testing.T) {
	m, clock := newTestLog(t)
	mustAppend(t, m, "short-meta", "x", storage.Options{Size: 10, MetaTTL: time.Minute})
	mustAppend(t, m, "short-ttl", "x", storage.Options{Size: 10, TTL: time.Second})
	mustAppend(t, m, "long", "x", storage.Options{Size: 10})
	mustTop(t, m, "never-published")

	clock.Advance(time.Minute)
	m.Sweep()
	if got := m.StreamCount(); got != 3 {
		t.Errorf("after sweep %d streams, want 3", got)
	}
	if got := m.WindowCap("short-meta"); got != -1 {
		t.Errorf("stream past its MetaTTL still there (window capacity %d)", got)
	}
	if got := m.WindowCap("short-ttl"); got != 0 {
		t.Errorf("emptied window capacity = %d, want 0 (released)", got)
	}
	if got := m.WindowCap("long"); got == 0 {
		t.Errorf("live window was released")
	}

	clock.Advance(storage.DefaultMetaTTL)
	m.Sweep()
	if got := m.StreamCount(); got != 0 {
		t.Errorf("after DefaultMetaTTL %d streams, want 0", got)
	}
}

// TestMemoryLog_ManyStreams: publishing to ever new stream names does not
// grow the log without a bound. Past the stream limit, the sweep forgets
// the streams that hold nothing (here emptied by the node budget); those
// that hold publications stay, and a forgotten one starts a new epoch.
func TestMemoryLog_ManyStreams(t *testing.T) {
	t.Cleanup(storage.SetMaxIdleStreams(100))
	clock := newFakeClock()
	m := storage.NewMemoryLogWithConfigClock(storage.MemoryConfig{MaxBytes: 20 * (storage.PublicationOverhead + 1000)}, clock.Now)
	t.Cleanup(func() {
		if err := m.ConsistencyCheck(); err != nil {
			t.Error(err)
		}
	})
	var first storage.Position
	for i := range 1000 {
		_, pos, err := m.Append(context.Background(), fmt.Sprintf("flood:%d", i), storage.Publication{Data: make([]byte, 1000)}, storage.Options{Size: 10})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = pos
		}
	}
	if got := m.WindowCap("flood:0"); got != 0 {
		t.Errorf("a stream emptied by the budget keeps a window of %d", got)
	}
	m.Sweep()
	if got := m.StreamCount(); got > 25 {
		t.Fatalf("%d streams remembered after the sweep; only those holding publications (about 20) should stay", got)
	}
	if got := m.WindowCap("flood:999"); got <= 0 {
		t.Error("the newest stream, which holds its publication, was forgotten")
	}
	_, pos, err := m.Append(context.Background(), "flood:0", storage.Publication{Data: []byte{1}}, storage.Options{Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	if pos.Epoch == first.Epoch || pos.Offset != 1 {
		t.Fatalf("a forgotten stream went on at %+v, want a new epoch at offset 1", pos)
	}
}

// TestMemoryLog_Model drives a MemoryLog with random operations and
// compares every Read with a model that keeps all publications.
func TestMemoryLog_Model(t *testing.T) {
	m, clock := newTestLog(t)
	rng := rand.New(rand.NewPCG(1, 2))
	type entry struct {
		pub storage.Publication
		at  time.Time
	}
	var (
		all  []entry // every publication of the current epoch
		kept int     // index in all of the oldest publication still held
		opts storage.Options
	)
	evict := func(now time.Time) {
		if opts.TTL <= 0 {
			return
		}
		for kept < len(all) && now.UnixMilli()-all[kept].at.UnixMilli() >= opts.TTL.Milliseconds() {
			kept++
		}
	}
	for i := range 5000 {
		clock.Advance(time.Duration(rng.IntN(300)) * time.Millisecond)
		now := clock.Now()
		if rng.IntN(3) > 0 {
			if rng.IntN(50) == 0 {
				opts = storage.Options{Size: rng.IntN(20), TTL: time.Duration(rng.IntN(3)) * 5 * time.Second}
			}
			pub, _ := mustAppend(t, m, "s", fmt.Sprint(i), opts)
			all = append(all, entry{pub, now})
			evict(now)
			if opts.Size == 0 {
				kept = len(all)
			}
			kept = max(kept, len(all)-opts.Size)
			continue
		}
		q := storage.Query{
			After:   storage.Position{Offset: uint64(rng.IntN(len(all) + 2))},
			Limit:   rng.IntN(6),
			Reverse: rng.IntN(2) == 0,
		}
		evict(now)
		var want []uint64
		for _, e := range all[kept:] {
			if e.pub.Offset > q.After.Offset {
				want = append(want, e.pub.Offset)
			}
		}
		more := q.Limit > 0 && len(want) > q.Limit
		if q.Reverse {
			slices.Reverse(want)
		}
		if more {
			want = want[:q.Limit]
		}
		complete := q.After.Offset >= uint64(len(all)) ||
			(kept < len(all) && all[kept].pub.Offset <= q.After.Offset+1)
		res := mustRead(t, m, "s", q)
		if got := pubOffsets(res.Pubs); !slices.Equal(got, want) && len(got)+len(want) > 0 {
			t.Fatalf("op %d: Read(%+v) with %+v = %v, want %v", i, q, opts, got, want)
		}
		if res.More != more || res.Complete != complete {
			t.Fatalf("op %d: Read(%+v) More %v Complete %v, want %v %v", i, q, res.More, res.Complete, more, complete)
		}
		if err := m.ConsistencyCheck(); err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
}

func TestMemoryLog_AppendAllocs(t *testing.T) {
	m, _ := newTestLog(t)
	ctx := context.Background()
	opts := storage.Options{Size: 100, TTL: time.Minute}
	pub := storage.Publication{Data: []byte("payload"), User: "u", Client: "c"}
	for range 200 { // grow the window to its bound first
		m.Append(ctx, "s", pub, opts)
	}
	if n := testing.AllocsPerRun(1000, func() { m.Append(ctx, "s", pub, opts) }); n != 0 {
		t.Errorf("Append allocates %v times per call, want 0", n)
	}
	q := storage.Query{After: storage.Position{Offset: 250}, Limit: 10}
	if n := testing.AllocsPerRun(1000, func() { m.Read(ctx, "s", q) }); n > 1 {
		t.Errorf("Read allocates %v times per call, want at most 1", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.Top(ctx, "s") }); n != 0 {
		t.Errorf("Top allocates %v times per call, want 0", n)
	}
}

func TestMemoryLog_Close(t *testing.T) {
	m := storage.NewMemoryLog()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, pos := mustAppend(t, m, "s", "x", storage.Options{Size: 1}); pos.Offset != 1 {
		t.Errorf("Append after Close = %+v, want offset 1", pos)
	}
}

// span returns from..to ascending.
func span(from, to uint64) []uint64 {
	var out []uint64
	for o := from; o <= to; o++ {
		out = append(out, o)
	}
	return out
}

func BenchmarkMemoryLog_Append(b *testing.B) {
	ctx := context.Background()
	opts := storage.Options{Size: 100, TTL: 5 * time.Minute}
	pub := storage.Publication{Data: make([]byte, 128), User: "user", Client: "client"}
	for _, streams := range []int{1, 1000} {
		names := make([]string, streams)
		for i := range names {
			names[i] = fmt.Sprintf("room:%d", i)
		}
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			m := storage.NewMemoryLog()
			defer m.Close()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m.Append(ctx, names[i%streams], pub, opts)
				i++
			}
		})
		b.Run(fmt.Sprintf("parallel/streams=%d", streams), func(b *testing.B) {
			m := storage.NewMemoryLog()
			defer m.Close()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(streams)
				for pb.Next() {
					m.Append(ctx, names[i%streams], pub, opts)
					i++
				}
			})
		})
	}
}

func BenchmarkMemoryLog_Read(b *testing.B) {
	ctx := context.Background()
	m := storage.NewMemoryLog()
	defer m.Close()
	opts := storage.Options{Size: 100, TTL: 5 * time.Minute}
	pub := storage.Publication{Data: make([]byte, 128), User: "user", Client: "client"}
	for range 1000 {
		m.Append(ctx, "s", pub, opts)
	}
	benchmarks := []struct {
		name string
		q    storage.Query
	}{
		{"recover=10", storage.Query{After: storage.Position{Offset: 990}}},
		{"window=100", storage.Query{}},
		{"limit=10", storage.Query{After: storage.Position{Offset: 950}, Limit: 10}},
		{"reverse/limit=10", storage.Query{Reverse: true, Limit: 10}},
		{"at-top", storage.Query{After: storage.Position{Offset: 1000}}},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Read(ctx, "s", bm.q)
			}
		})
	}
}

// A document over its cap, or documents over their budget, refuse the
// publication rather than evict; the history budget never touches them.
func TestMemoryLogDocumentBounds(t *testing.T) {
	m := storage.NewMemoryLogWith(storage.MemoryConfig{MaxBytes: 4096, MaxDocumentBytes: 1000, DocumentBudget: 1500})
	defer m.Close()
	ctx := context.Background()
	doc := storage.Options{Document: true}
	pub := storage.Publication{Data: make([]byte, 72)} // 200 bytes stored
	for i := range 5 {
		if _, _, err := m.Append(ctx, "doc:a", pub, doc); err != nil {
			t.Fatalf("append #%d: %v", i, err)
		}
	}
	if _, _, err := m.Append(ctx, "doc:a", pub, doc); !errors.Is(err, storage.ErrDocumentFull) {
		t.Fatalf("append over the document cap: %v, want ErrDocumentFull", err)
	}
	if top, _ := m.Top(ctx, "doc:a"); top.Offset != 5 {
		t.Fatalf("a refused publication was numbered: top %d", top.Offset)
	}
	for i := range 2 {
		if _, _, err := m.Append(ctx, "doc:b", pub, doc); err != nil {
			t.Fatalf("doc:b append #%d: %v", i, err)
		}
	}
	if _, _, err := m.Append(ctx, "doc:b", pub, doc); !errors.Is(err, storage.ErrDocumentFull) {
		t.Fatalf("append over the documents' budget: %v, want ErrDocumentFull", err)
	}
	// A flood of ordinary history over the log's budget leaves the
	// documents whole.
	for i := range 200 {
		m.Append(ctx, fmt.Sprintf("chat:%d", i), pub, storage.Options{Size: 100})
	}
	res, err := m.Read(ctx, "doc:a", storage.Query{})
	if err != nil || len(res.Pubs) != 5 || !res.Complete {
		t.Fatalf("doc:a after the flood: %d pubs, complete %v, err %v", len(res.Pubs), res.Complete, err)
	}
	// A snapshot makes room.
	top, _ := m.Top(ctx, "doc:a")
	if ok, err := m.Compact(ctx, "doc:a", top, []byte("state"), doc); !ok || err != nil {
		t.Fatalf("compact: %v %v", ok, err)
	}
	if _, _, err := m.Append(ctx, "doc:b", pub, doc); err != nil {
		t.Fatalf("append after the compact freed room: %v", err)
	}
	if got := m.DocumentBytes(); got != int64(len("state")+storage.PublicationOverhead+3*pub.StoredBytes()) {
		t.Fatalf("DocumentBytes = %d", got)
	}
	if err := m.ConsistencyCheck(); err != nil {
		t.Fatal(err)
	}
}

// A document survives what forgets ordinary streams: its meta TTL passing
// and the sweep of a crowded log, even with only a snapshot left.
func TestMemoryLogDocumentOutlivesSweeps(t *testing.T) {
	defer storage.SetMaxIdleStreams(1)()
	clock := newFakeClock()
	m := storage.NewMemoryLogWithClock(clock.Now)
	ctx := context.Background()
	doc := storage.Options{Document: true}
	_, pos, err := m.Append(ctx, "doc:kept", storage.Publication{Data: []byte("u1")}, doc)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := m.Compact(ctx, "doc:kept", pos, []byte("state"), doc); !ok || err != nil {
		t.Fatalf("compact: %v %v", ok, err)
	}
	for i := range 5 { // crowd the log with streams that hold nothing
		m.Top(ctx, fmt.Sprintf("empty:%d", i))
	}
	clock.Advance(48 * time.Hour) // past the default meta TTL
	m.Sweep()
	res, err := m.Read(ctx, "doc:kept", storage.Query{})
	if err != nil || res.Top != pos || !res.Snapshot || string(res.Pubs[0].Data) != "state" {
		t.Fatalf("after the sweeps: top %+v (want %+v), snapshot %v, err %v", res.Top, pos, res.Snapshot, err)
	}
	if n := m.StreamCount(); n != 1 {
		t.Fatalf("%d streams left, want only the document", n)
	}
}
