package bench

import (
	"encoding/json"
	"errors"
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram buckets are log-linear: values below 2^histSubBits are exact,
// and every power of two above is split into histHalf equal buckets, so a
// bucket is never wider than 1/histHalf of its values (0.8% at 7 bits).
const (
	histSubBits = 7
	histHalf    = 1 << (histSubBits - 1)
	histBuckets = (63-histSubBits)*histHalf + 2*histHalf // the last holds 2^63-1
)

func bucketOf(v int64) int {
	if v < 1<<histSubBits {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histSubBits
	return shift*histHalf + int(uint64(v)>>shift)
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < 1<<histSubBits {
		return int64(i), int64(i)
	}
	shift := i/histHalf - 1
	m := int64(i%histHalf + histHalf)
	lo = m << shift
	return lo, lo + (1 << shift) - 1
}

// Histogram counts values (nanoseconds, in this package) in log-linear
// buckets. It merges exactly, so workers send theirs to the coordinator,
// which adds them up. Not safe for concurrent use; AtomicHistogram is.
type Histogram struct {
	counts   []uint64 // histBuckets long once anything was recorded
	n        uint64
	sum      float64
	min, max int64
}

// Record adds v; negative values count as 0.
func (h *Histogram) Record(v int64) {
	v = max(v, 0)
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
	}
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest value recorded (exact).
func (h *Histogram) Max() int64 { return h.max }

// Mean is the average value (exact).
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100): the
// smallest recorded value such that at least p% of values are at most it,
// to within the bucket's width (the bucket's midpoint, clipped to the exact
// minimum and maximum). An empty histogram returns 0.
func (h *Histogram) Percentile(p float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := nearestRank(h.n, p)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// nearestRank is the 1-based rank of the p-th percentile of n values.
func nearestRank(n uint64, p float64) uint64 {
	x := p / 100 * float64(n)
	// p/100 is rarely exact in binary: 99.9% of 1000 must be 999, not 1000.
	r := uint64(math.Ceil(x - 1e-9*max(x, 1)))
	return min(max(r, 1), n)
}

// Percentile returns the nearest-rank p-th percentile of sorted values
// (ascending): the smallest value such that at least p% of the values are
// at most it. Empty input returns 0.
func Percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[nearestRank(uint64(len(sorted)), p)-1]
}

type histJSON struct {
	N       uint64     `json:"n"`
	Sum     float64    `json:"sum"`
	Min     int64      `json:"min"`
	Max     int64      `json:"max"`
	Buckets [][2]int64 `json:"b"` // [bucket index, count], non-empty ones
}

// MarshalJSON writes the non-empty buckets only.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	j := histJSON{N: h.n, Sum: h.sum, Min: h.min, Max: h.max, Buckets: [][2]int64{}}
	for i, c := range h.counts {
		if c > 0 {
			j.Buckets = append(j.Buckets, [2]int64{int64(i), int64(c)})
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*h = Histogram{n: j.N, sum: j.Sum, min: j.Min, max: j.Max}
	if j.N == 0 {
		return nil
	}
	h.counts = make([]uint64, histBuckets)
	var total uint64
	for _, bc := range j.Buckets {
		if bc[0] < 0 || bc[0] >= histBuckets || bc[1] < 0 {
			return errors.New("bench: histogram bucket out of range")
		}
		h.counts[bc[0]] += uint64(bc[1])
		total += uint64(bc[1])
	}
	if total != j.N {
		return errors.New("bench: histogram count does not match its buckets")
	}
	return nil
}

// AtomicHistogram is a Histogram that many goroutines record into at once
// (every client's reader in a worker); Take reads and resets it.
type AtomicHistogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Int64
	max    atomic.Int64
	min    atomic.Int64 // math.MaxInt64 when empty
}

// NewAtomicHistogram returns an empty histogram.
func NewAtomicHistogram() *AtomicHistogram {
	h := new(AtomicHistogram)
	h.min.Store(math.MaxInt64)
	return h
}

// Record adds v; negative values count as 0.
func (h *AtomicHistogram) Record(v int64) {
	v = max(v, 0)
	h.counts[bucketOf(v)].Add(1)
	h.sum.Add(v)
	for cur := h.max.Load(); v > cur && !h.max.CompareAndSwap(cur, v); cur = h.max.Load() {
	}
	for cur := h.min.Load(); v < cur && !h.min.CompareAndSwap(cur, v); cur = h.min.Load() {
	}
	h.n.Add(1)
}

// Take returns what was recorded since the last Take and resets. Values
// recorded while it runs land in this take or the next, never in neither;
// the summary fields (n, sum, min, max) may be off by those few values.
func (h *AtomicHistogram) Take() *Histogram {
	out := &Histogram{}
	var n uint64
	for i := range h.counts {
		if c := h.counts[i].Swap(0); c > 0 {
			if out.counts == nil {
				out.counts = make([]uint64, histBuckets)
			}
			out.counts[i] = c
			n += c
		}
	}
	h.n.Swap(0)
	sum := h.sum.Swap(0)
	mx := h.max.Swap(0)
	mn := h.min.Swap(math.MaxInt64)
	if n == 0 {
		return out
	}
	out.n, out.sum = n, float64(sum)
	// Keep min and max consistent with the buckets taken, whatever
	// recorders did meanwhile.
	first, last := -1, -1
	for i, c := range out.counts {
		if c > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	lo, hi := bucketRange(first)
	out.min = min(max(mn, lo), hi)
	lo, hi = bucketRange(last)
	out.max = min(max(mx, lo), hi)
	return out
}

// Latency summarises a histogram of nanoseconds in milliseconds.
type Latency struct {
	Count  uint64  `json:"count"`
	P50ms  float64 `json:"p50_ms"`
	P90ms  float64 `json:"p90_ms"`
	P99ms  float64 `json:"p99_ms"`
	P999ms float64 `json:"p999_ms"`
	Maxms  float64 `json:"max_ms"`
	Meanms float64 `json:"mean_ms"`
}

// Summary returns h's percentiles in milliseconds.
func (h *Histogram) Summary() Latency {
	if h == nil {
		return Latency{}
	}
	return Latency{
		Count:  h.n,
		P50ms:  ms(h.Percentile(50)),
		P90ms:  ms(h.Percentile(90)),
		P99ms:  ms(h.Percentile(99)),
		P999ms: ms(h.Percentile(99.9)),
		Maxms:  ms(h.max),
		Meanms: round3(h.Mean() / 1e6),
	}
}

func ms(ns int64) float64 { return round3(float64(ns) / 1e6) }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// durMS is d in milliseconds, rounded to microseconds.
func durMS(d time.Duration) float64 { return round3(float64(d) / 1e6) }
