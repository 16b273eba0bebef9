package bench

import "sync/atomic"

// SeqRecorder keeps, per message sequence number, the worst latency and how
// many receivers saw it: what "time to the last subscriber" is made of.
// Sequence numbers are dense from 0; it holds a fixed number of them and
// counts the rest as overflow. Safe for concurrent use without locks (every
// client's reader records into it).
type SeqRecorder struct {
	worst    []atomic.Int64
	count    []atomic.Int32
	overflow atomic.Int64
}

// NewSeqRecorder holds sequence numbers 0..n-1.
func NewSeqRecorder(n int) *SeqRecorder {
	return &SeqRecorder{worst: make([]atomic.Int64, n), count: make([]atomic.Int32, n)}
}

// Record notes that seq arrived at one receiver after lat nanoseconds.
func (r *SeqRecorder) Record(seq uint64, lat int64) {
	if seq >= uint64(len(r.worst)) {
		r.overflow.Add(1)
		return
	}
	w := &r.worst[seq]
	for cur := w.Load(); lat > cur && !w.CompareAndSwap(cur, lat); cur = w.Load() {
	}
	r.count[seq].Add(1)
}

// Overflow is how many receipts had a sequence number beyond the capacity.
func (r *SeqRecorder) Overflow() int64 { return r.overflow.Load() }

// SeqStat is one message's worst latency (ns) and receiver count.
type SeqStat struct {
	Seq   uint64 `json:"i"`
	Worst int64  `json:"w"`
	Count int    `json:"n"`
}

// Stats returns every sequence number that arrived somewhere, ascending.
func (r *SeqRecorder) Stats() []SeqStat {
	var out []SeqStat
	for i := range r.count {
		if c := r.count[i].Load(); c > 0 {
			out = append(out, SeqStat{Seq: uint64(i), Worst: r.worst[i].Load(), Count: int(c)})
		}
	}
	return out
}

// SeqTable merges SeqStats from every worker.
type SeqTable map[uint64]SeqStat

// Add merges stats in: counts add up, the worst latency is the largest.
func (t SeqTable) Add(stats []SeqStat) {
	for _, s := range stats {
		cur := t[s.Seq]
		cur.Seq = s.Seq
		cur.Count += s.Count
		cur.Worst = max(cur.Worst, s.Worst)
		t[s.Seq] = cur
	}
}

// TimeToLast summarises the messages whose sequence numbers sent lists:
// the histogram of each message's worst latency (time to its last
// receiver), and how many deliveries are missing given that each should
// have reached want receivers. A message nobody received counts want
// missing and is not in the histogram.
func (t SeqTable) TimeToLast(sent []uint64, want int) (h *Histogram, missing int64) {
	h = &Histogram{}
	for _, seq := range sent {
		s, ok := t[seq]
		if !ok {
			missing += int64(want)
			continue
		}
		missing += int64(max(want-s.Count, 0))
		h.Record(s.Worst)
	}
	return h, missing
}

// seqRange lists from..to-1.
func seqRange(from, to uint64) []uint64 {
	out := make([]uint64, 0, to-from)
	for s := from; s < to; s++ {
		out = append(out, s)
	}
	return out
}
