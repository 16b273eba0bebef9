package bench

import (
	"sync"
	"testing"
)

func TestSeqRecorderTimeToLast(t *testing.T) {
	// Two workers, three receivers each; message 2 reaches only four of the
	// six, message 3 nobody, message 9 is past the table.
	var stats [][]SeqStat
	for w := 0; w < 2; w++ {
		r := NewSeqRecorder(5)
		var wg sync.WaitGroup
		for recv := 0; recv < 3; recv++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				base := int64(w*3+recv) * 10
				r.Record(0, base+1)
				r.Record(1, base+2)
				if w == 0 || recv == 0 {
					r.Record(2, base+3)
				}
				r.Record(9, 1)
			}()
		}
		wg.Wait()
		if r.Overflow() != 3 {
			t.Fatalf("overflow %d", r.Overflow())
		}
		stats = append(stats, r.Stats())
	}
	tab := SeqTable{}
	for _, s := range stats {
		tab.Add(s)
	}
	if s := tab[0]; s.Count != 6 || s.Worst != 51 {
		t.Fatalf("seq 0: %+v", s)
	}
	if s := tab[2]; s.Count != 4 || s.Worst != 33 {
		t.Fatalf("seq 2: %+v", s)
	}
	h, missing := tab.TimeToLast([]uint64{0, 1, 2, 3}, 6)
	if missing != 2+6 {
		t.Fatalf("missing %d, want 8", missing)
	}
	if h.Count() != 3 || h.Max() != 52 || h.Percentile(50) != 51 {
		t.Fatalf("time to last: n %d max %d p50 %d", h.Count(), h.Max(), h.Percentile(50))
	}
	if got := seqRange(3, 6); len(got) != 3 || got[0] != 3 || got[2] != 5 {
		t.Fatalf("seqRange %v", got)
	}
}
