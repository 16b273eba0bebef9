package storage_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/storage"
)

// newBudgetLog returns a MemoryLog with byte bounds on a fake clock whose
// state is checked when the test ends.
func newBudgetLog(t *testing.T, cfg storage.MemoryConfig) (*storage.MemoryLog, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	m := storage.NewMemoryLogWithConfigClock(cfg, clock.Now)
	t.Cleanup(func() {
		if err := m.ConsistencyCheck(); err != nil {
			t.Error(err)
		}
		m.Close()
	})
	return m, clock
}

// data returns a payload that makes a publication with no user or client
// count exactly stored bytes against a byte bound.
func data(stored int) string {
	return strings.Repeat("x", stored-storage.PublicationOverhead)
}

func TestPublication_StoredBytes(t *testing.T) {
	tests := []struct {
		pub  storage.Publication
		want int
	}{
		{storage.Publication{}, storage.PublicationOverhead},
		{storage.Publication{Data: make([]byte, 1000)}, 1000 + storage.PublicationOverhead},
		{storage.Publication{Data: []byte("abc"), User: "user", Client: "client-1"}, 15 + storage.PublicationOverhead},
	}
	for _, tc := range tests {
		if got := tc.pub.StoredBytes(); got != tc.want {
			t.Errorf("StoredBytes(%+v) = %d, want %d", tc.pub, got, tc.want)
		}
	}
}

func TestMemoryLog_StreamBytes(t *testing.T) {
	keep := storage.Options{Size: 100, TTL: time.Hour}
	type step struct {
		stream string
		stored int // StoredBytes of the publication appended
	}
	tests := []struct {
		name  string
		cap   int
		steps []step
		want  map[string][]uint64 // offsets held per stream afterwards
	}{
		{
			name:  "under the cap",
			cap:   3000,
			steps: []step{{"s", 1000}, {"s", 1000}, {"s", 1000}},
			want:  map[string][]uint64{"s": span(1, 3)},
		},
		{
			name:  "oldest go first",
			cap:   3000,
			steps: []step{{"s", 1000}, {"s", 1000}, {"s", 1000}, {"s", 1000}, {"s", 1500}},
			want:  map[string][]uint64{"s": span(4, 5)},
		},
		{
			name:  "one over the cap is kept alone",
			cap:   3000,
			steps: []step{{"s", 1000}, {"s", 1000}, {"s", 5000}},
			want:  map[string][]uint64{"s": span(3, 3)},
		},
		{
			name:  "and goes when the next comes",
			cap:   3000,
			steps: []step{{"s", 5000}, {"s", 1000}},
			want:  map[string][]uint64{"s": span(2, 2)},
		},
		{
			name:  "empty publications count their overhead",
			cap:   3 * storage.PublicationOverhead,
			steps: []step{{"s", 128}, {"s", 128}, {"s", 128}, {"s", 128}, {"s", 128}},
			want:  map[string][]uint64{"s": span(3, 5)},
		},
		{
			name:  "streams are capped apart",
			cap:   2000,
			steps: []step{{"a", 1000}, {"b", 1000}, {"a", 1000}, {"b", 1000}, {"a", 1000}},
			want:  map[string][]uint64{"a": span(2, 3), "b": span(1, 2)},
		},
		{
			name:  "no cap",
			steps: []step{{"s", 1 << 20}, {"s", 1 << 20}, {"s", 1 << 20}},
			want:  map[string][]uint64{"s": span(1, 3)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newBudgetLog(t, storage.MemoryConfig{MaxStreamBytes: tc.cap})
			for _, st := range tc.steps {
				mustAppend(t, m, st.stream, data(st.stored), keep)
			}
			for stream, want := range tc.want {
				res := mustRead(t, m, stream, storage.Query{})
				if got := pubOffsets(res.Pubs); !slices.Equal(got, want) {
					t.Errorf("%s holds %v, want %v", stream, got, want)
				}
			}
		})
	}
}

func TestMemoryLog_NodeBytes(t *testing.T) {
	keep := storage.Options{Size: 100, TTL: time.Hour}

	t.Run("oldest across streams go first", func(t *testing.T) {
		m, _ := newBudgetLog(t, storage.MemoryConfig{MaxBytes: 5000})
		for _, s := range []string{"a", "b", "a", "c", "b"} {
			mustAppend(t, m, s, data(1000), keep)
		}
		if got := m.UsedBytes(); got != 5000 {
			t.Fatalf("UsedBytes = %d, want 5000", got)
		}
		mustAppend(t, m, "a", data(1000), keep) // evicts a1
		mustAppend(t, m, "c", data(1000), keep) // evicts b1
		mustAppend(t, m, "c", data(2000), keep) // evicts a2, then c1
		want := map[string][]uint64{"a": span(3, 3), "b": span(2, 2), "c": span(2, 3)}
		for stream, w := range want {
			if got := pubOffsets(mustRead(t, m, stream, storage.Query{}).Pubs); !slices.Equal(got, w) {
				t.Errorf("%s holds %v, want %v", stream, got, w)
			}
		}
		if got := m.UsedBytes(); got != 5000 {
			t.Errorf("UsedBytes = %d, want 5000", got)
		}
	})

	t.Run("over the whole budget is not kept", func(t *testing.T) {
		m, _ := newBudgetLog(t, storage.MemoryConfig{MaxBytes: 5000})
		mustAppend(t, m, "a", data(1000), keep)
		mustAppend(t, m, "big", data(1000), keep)
		_, pos := mustAppend(t, m, "big", data(5001), keep)
		if pos.Offset != 2 {
			t.Errorf("Append over the budget got offset %d, want 2: still numbered", pos.Offset)
		}
		if res := mustRead(t, m, "big", storage.Query{}); len(res.Pubs) != 0 || res.Complete {
			t.Errorf("big holds %v, Complete %v; want nothing, incomplete", pubOffsets(res.Pubs), res.Complete)
		}
		if got := pubOffsets(mustRead(t, m, "a", storage.Query{}).Pubs); !slices.Equal(got, span(1, 1)) {
			t.Errorf("a holds %v, want [1]: another stream's big publication must not evict it", got)
		}
		mustAppend(t, m, "big", data(5000), keep) // exactly the budget fits, alone
		if got := pubOffsets(mustRead(t, m, "big", storage.Query{}).Pubs); !slices.Equal(got, span(3, 3)) {
			t.Errorf("big holds %v, want [3]", got)
		}
	})

	t.Run("ended epochs do not evict the new one", func(t *testing.T) {
		m, clock := newBudgetLog(t, storage.MemoryConfig{MaxBytes: 3000})
		short := storage.Options{Size: 100, MetaTTL: time.Minute}
		_, old := mustAppend(t, m, "s", data(1000), short)
		mustAppend(t, m, "s", data(1000), short)
		clock.Advance(time.Minute)
		// s restarts: its queued offsets 1 and 2 now name other publications.
		mustAppend(t, m, "s", data(1000), short)
		mustAppend(t, m, "s", data(1000), short)
		mustAppend(t, m, "t", data(1000), keep)
		if got := m.UsedBytes(); got != 3000 {
			t.Fatalf("UsedBytes = %d, want 3000", got)
		}
		mustAppend(t, m, "t", data(1000), keep) // evicts the new s1 only
		res := mustRead(t, m, "s", storage.Query{})
		if got := pubOffsets(res.Pubs); !slices.Equal(got, span(2, 2)) || res.Top.Epoch == old.Epoch {
			t.Errorf("s holds %v in epoch %q, want [2] in a new epoch", got, res.Top.Epoch)
		}
		if got := pubOffsets(mustRead(t, m, "t", storage.Query{}).Pubs); !slices.Equal(got, span(1, 2)) {
			t.Errorf("t holds %v, want [1 2]", got)
		}
	})

	t.Run("sweep returns the bytes of forgotten streams", func(t *testing.T) {
		m, clock := newBudgetLog(t, storage.MemoryConfig{MaxBytes: 3000})
		mustAppend(t, m, "gone", data(1000), storage.Options{Size: 10, MetaTTL: time.Minute})
		mustAppend(t, m, "aged", data(1000), storage.Options{Size: 10, TTL: time.Second})
		mustAppend(t, m, "kept", data(1000), keep)
		clock.Advance(time.Minute)
		m.Sweep()
		if got := m.UsedBytes(); got != 1000 {
			t.Fatalf("UsedBytes after sweep = %d, want 1000", got)
		}
		mustAppend(t, m, "kept", data(1000), keep)
		mustAppend(t, m, "kept", data(1000), keep)
		if got := pubOffsets(mustRead(t, m, "kept", storage.Query{}).Pubs); !slices.Equal(got, span(1, 3)) {
			t.Errorf("kept holds %v, want [1 2 3]: stale entries must not count", got)
		}
	})
}

// TestMemoryLog_ByteEvictionIncomplete checks what a recovery sees after
// its publications were evicted for bytes, per stream or for the node.
func TestMemoryLog_ByteEvictionIncomplete(t *testing.T) {
	keep := storage.Options{Size: 100, TTL: time.Hour}
	for _, cfg := range []storage.MemoryConfig{{MaxStreamBytes: 3000}, {MaxBytes: 3000}} {
		t.Run(fmt.Sprintf("%+v", cfg), func(t *testing.T) {
			m, _ := newBudgetLog(t, cfg)
			for range 5 {
				mustAppend(t, m, "s", data(1000), keep) // 1 and 2 evicted
			}
			tests := []struct {
				after    uint64
				want     []uint64
				complete bool
			}{
				{after: 0, want: span(3, 5)},
				{after: 1, want: span(3, 5)},
				{after: 2, want: span(3, 5), complete: true},
				{after: 4, want: span(5, 5), complete: true},
				{after: 5, complete: true},
			}
			for _, tc := range tests {
				res := mustRead(t, m, "s", storage.Query{After: storage.Position{Offset: tc.after}})
				if got := pubOffsets(res.Pubs); !slices.Equal(got, tc.want) || res.Complete != tc.complete {
					t.Errorf("after %d: %v, Complete %v; want %v, %v", tc.after, got, res.Complete, tc.want, tc.complete)
				}
			}
		})
	}
}

// TestMemoryLog_EvictQueueBounded checks that the node budget's queue
// does not grow with publications that went for other reasons, and never
// reached the budget.
func TestMemoryLog_EvictQueueBounded(t *testing.T) {
	tests := []struct {
		name string
		opts storage.Options
		tick time.Duration
	}{
		{name: "count", opts: storage.Options{Size: 2}},
		{name: "age", opts: storage.Options{Size: 1000, TTL: time.Second}, tick: 100 * time.Millisecond},
		{name: "none kept", opts: storage.Options{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, clock := newBudgetLog(t, storage.MemoryConfig{MaxBytes: 1 << 30})
			most := 0
			for i := range 50_000 {
				mustAppend(t, m, fmt.Sprint("s", i%7), "x", tc.opts)
				clock.Advance(tc.tick)
				most = max(most, m.QueueLen())
			}
			if most > 4096+100 {
				t.Errorf("eviction queue grew to %d entries for at most %d held publications", most, 7*min(tc.opts.Size, 10))
			}
		})
	}
}

// TestMemoryLog_Budget_Concurrent runs appends, reads and sweeps on many
// streams at once under a small budget and cap, for the race detector and
// the accounting checks of ConsistencyCheck.
func TestMemoryLog_Budget_Concurrent(t *testing.T) {
	m, clock := newBudgetLog(t, storage.MemoryConfig{MaxBytes: 64 << 10, MaxStreamBytes: 16 << 10})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				stream := fmt.Sprint("s", (w*31+i)%13)
				opts := storage.Options{Size: 50, TTL: time.Second, MetaTTL: 5 * time.Second}
				pub := storage.Publication{Data: []byte(strings.Repeat("x", (i*97)%3000))}
				if _, _, err := m.Append(t.Context(), stream, pub, opts); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				if i%5 == 0 {
					res, err := m.Read(t.Context(), stream, storage.Query{MaxBytes: 4000})
					if err != nil {
						t.Errorf("Read: %v", err)
						return
					}
					for j := 1; j < len(res.Pubs); j++ {
						if res.Pubs[j].Offset != res.Pubs[j-1].Offset+1 {
							t.Errorf("Read of %s: offsets %v not contiguous", stream, pubOffsets(res.Pubs))
							return
						}
					}
				}
				if i%100 == 0 {
					clock.Advance(300 * time.Millisecond)
					m.Sweep()
				}
			}
		})
	}
	wg.Wait()
	if got := m.UsedBytes(); got > 64<<10 {
		t.Errorf("UsedBytes = %d, over the budget of %d", got, 64<<10)
	}
}

// TestMemoryLog_MemoryBound appends far more than the node budget, in
// publications of 1 MB each allocated afresh, and checks that the heap
// grows by about the budget only. The log does not copy Data, so the GC
// can free a payload only once the log let go of it: the heap measures
// what the log holds.
func TestMemoryLog_MemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 600 MB")
	}
	const (
		budget  = 64 << 20
		pubs    = 600
		size    = 1 << 20
		streams = 20
	)
	m := storage.NewMemoryLogWith(storage.MemoryConfig{MaxBytes: budget})
	defer m.Close()
	ctx := context.Background()
	opts := storage.Options{Size: 1000, TTL: time.Hour} // neither bound evicts anything here
	names := make([]string, streams)
	for i := range names {
		names[i] = fmt.Sprint("stream-", i)
		m.Top(ctx, names[i]) // the streams' own memory is not what is measured
	}

	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()
	start := time.Now()
	for i := range pubs {
		if _, _, err := m.Append(ctx, names[i%streams], storage.Publication{Data: make([]byte, size)}, opts); err != nil {
			t.Fatal(err)
		}
	}
	after := heap()
	runtime.KeepAlive(m)
	grew := int64(after) - int64(before)
	t.Logf("appended %d MB in %v; heap in use grew by %.1f MiB (budget %d MiB)",
		pubs*size/1_000_000, time.Since(start).Round(time.Millisecond), float64(grew)/(1<<20), budget>>20)
	if grew > 96<<20 {
		t.Errorf("heap in use grew by %d MiB for a budget of %d MiB", grew>>20, budget>>20)
	}
	if got := m.UsedBytes(); got > budget || got < budget-2*size {
		t.Errorf("UsedBytes = %d, want just under the budget %d", got, budget)
	}
	if err := m.ConsistencyCheck(); err != nil {
		t.Error(err)
	}
}

func TestMemoryLog_AppendAllocs_Budget(t *testing.T) {
	m, _ := newBudgetLog(t, storage.MemoryConfig{MaxBytes: 1 << 20, MaxStreamBytes: 64 << 10})
	ctx := context.Background()
	opts := storage.Options{Size: 100, TTL: time.Minute}
	pub := storage.Publication{Data: make([]byte, 1000), User: "u", Client: "c"}
	for i := range 20_000 { // fill the budget and let the queue settle
		m.Append(ctx, fmt.Sprint("s", i%40), pub, opts)
	}
	if n := testing.AllocsPerRun(1000, func() { m.Append(ctx, "s1", pub, opts) }); n != 0 {
		t.Errorf("Append allocates %v times per call, want 0", n)
	}
	q := storage.Query{Limit: 10, MaxBytes: 5000}
	if n := testing.AllocsPerRun(1000, func() { m.Read(ctx, "s1", q) }); n > 1 {
		t.Errorf("Read allocates %v times per call, want at most 1", n)
	}
}
