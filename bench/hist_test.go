package bench

import (
	"encoding/json"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
)

func TestBucketsCoverEveryValue(t *testing.T) {
	prevHi := int64(-1)
	for i := 0; i < histBuckets; i++ {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, want %d (no gaps or overlaps)", i, lo, prevHi+1)
		}
		if hi < lo {
			t.Fatalf("bucket %d: hi %d < lo %d", i, hi, lo)
		}
		if lo >= 1<<histSubBits && float64(hi-lo+1)/float64(lo) > 1.0/histHalf+1e-12 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d of its values", i, lo, hi, histHalf)
		}
		for _, v := range []int64{lo, hi, lo + (hi-lo)/2} {
			if b := bucketOf(v); b != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, b, i)
			}
		}
		prevHi = hi
		if hi < 0 || i == histBuckets-1 {
			break
		}
	}
	if bucketOf(-5) != 0 {
		t.Fatal("negative values belong in bucket 0")
	}
	if b := bucketOf(1<<63 - 1); b != histBuckets-1 {
		t.Fatalf("max int64 in bucket %d, want the last, %d", b, histBuckets-1)
	}
}

func TestPercentileSorted(t *testing.T) {
	seq := func(n int) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(i + 1)
		}
		return out
	}
	tests := []struct {
		name string
		in   []int64
		p    float64
		want int64
	}{
		{"empty", nil, 99, 0},
		{"one", []int64{7}, 50, 7},
		{"one p100", []int64{7}, 100, 7},
		{"p50 of 1..100", seq(100), 50, 50},
		{"p99 of 1..100", seq(100), 99, 99},
		{"p100 of 1..100", seq(100), 100, 100},
		{"p99 of 1..1000", seq(1000), 99, 990},
		{"p99.9 of 1..1000", seq(1000), 99.9, 999},
		{"p50 of 1..3", seq(3), 50, 2},
		{"p0 is the minimum", seq(10), 0, 1},
		{"p99 of 10 is the max", seq(10), 99, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.in, tt.p); got != tt.want {
				t.Fatalf("Percentile(p%v) = %d, want %d", tt.p, got, tt.want)
			}
		})
	}
}

// TestHistogramPercentileMatchesExact: bucketed percentiles stay within a
// bucket's width of the exact nearest-rank values, and min, max, mean and
// count are exact.
func TestHistogramPercentileMatchesExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 10, 1000, 50000} {
		var h Histogram
		vals := make([]int64, n)
		var sum float64
		for i := range vals {
			// Latency-like: mostly around 1ms, a long tail to seconds.
			v := int64(r.ExpFloat64()*1e6) + int64(r.IntN(100))
			if r.IntN(100) == 0 {
				v *= 1000
			}
			vals[i] = v
			sum += float64(v)
			h.Record(v)
		}
		sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
		for _, p := range []float64{1, 50, 90, 99, 99.9, 100} {
			want := Percentile(vals, p)
			got := h.Percentile(p)
			tol := want/histHalf + 1
			if got < want-tol || got > want+tol {
				t.Fatalf("n=%d p%v: got %d, exact %d (tolerance %d)", n, p, got, want, tol)
			}
		}
		if h.Count() != uint64(n) || h.Max() != vals[n-1] || h.min != vals[0] {
			t.Fatalf("n=%d: count %d max %d min %d, want %d %d %d", n, h.Count(), h.Max(), h.min, n, vals[n-1], vals[0])
		}
		if m := h.Mean(); m < sum/float64(n)-1e-6*sum || m > sum/float64(n)+1e-6*sum {
			t.Fatalf("n=%d: mean %v, want %v", n, m, sum/float64(n))
		}
	}
}

func TestHistogramEmpty(t *testing.T) {
	var h Histogram
	if h.Percentile(99) != 0 || h.Count() != 0 || h.Mean() != 0 {
		t.Fatal("an empty histogram reports zeros")
	}
	if s := h.Summary(); s != (Latency{}) {
		t.Fatalf("empty summary %+v", s)
	}
	var nilH *Histogram
	if s := nilH.Summary(); s != (Latency{}) {
		t.Fatalf("nil summary %+v", s)
	}
}

func TestHistogramMergeEqualsRecordingAll(t *testing.T) {
	var a, b, all Histogram
	for i := int64(0); i < 5000; i++ {
		v := i * i % 100003
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(nil)
	m.Merge(&Histogram{})
	if m.n != all.n || m.min != all.min || m.max != all.max || m.sum != all.sum {
		t.Fatalf("merged summary differs: %+v vs %+v", m.Summary(), all.Summary())
	}
	for i := range all.counts {
		if m.counts[i] != all.counts[i] {
			t.Fatalf("bucket %d: %d vs %d", i, m.counts[i], all.counts[i])
		}
	}
}

func TestHistogramJSONRoundTrip(t *testing.T) {
	var h Histogram
	for _, v := range []int64{0, 1, 127, 128, 5000, 1e6, 3e9} {
		h.Record(v)
	}
	b, err := json.Marshal(&h)
	if err != nil {
		t.Fatal(err)
	}
	var back Histogram
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Summary() != h.Summary() {
		t.Fatalf("round trip: %+v, want %+v", back.Summary(), h.Summary())
	}
	var empty Histogram
	b, _ = json.Marshal(&empty)
	if err := json.Unmarshal(b, &back); err != nil || back.Count() != 0 {
		t.Fatalf("empty round trip: %v %d", err, back.Count())
	}
	for _, bad := range []string{
		`{"n":1,"b":[[99999,1]]}`,
		`{"n":1,"b":[[-1,1]]}`,
		`{"n":2,"b":[[3,1]]}`,
	} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Fatalf("accepted %s", bad)
		}
	}
}

func TestAtomicHistogramTakeResets(t *testing.T) {
	h := NewAtomicHistogram()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(1); i <= 1000; i++ {
				h.Record(i * 1000)
			}
		}()
	}
	wg.Wait()
	got := h.Take()
	if got.Count() != 4000 || got.Max() != 1e6 || got.min != 1000 {
		t.Fatalf("take: n %d max %d min %d", got.Count(), got.Max(), got.min)
	}
	if again := h.Take(); again.Count() != 0 || again.Percentile(50) != 0 {
		t.Fatalf("second take not empty: %d", again.Count())
	}
	h.Record(-3)
	if got := h.Take(); got.Count() != 1 || got.Max() != 0 {
		t.Fatalf("negative value: n %d max %d", got.Count(), got.Max())
	}
}

func TestSummaryInMilliseconds(t *testing.T) {
	var h Histogram
	for i := 0; i < 100; i++ {
		h.Record(2_000_000) // 2 ms
	}
	h.Record(50_000_000) // 50 ms
	s := h.Summary()
	if s.Count != 101 || s.P50ms < 1.98 || s.P50ms > 2.02 || s.Maxms != 50 {
		t.Fatalf("summary %+v", s)
	}
	if s.P99ms < 1.98 || s.P99ms > 2.02 {
		t.Fatalf("p99 of 100×2ms + 1×50ms should be 2ms (nearest rank 100 of 101), got %v", s.P99ms)
	}
}

func BenchmarkAtomicHistogramRecord(b *testing.B) {
	h := NewAtomicHistogram()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		h.Record(int64(i) * 997)
	}
}
