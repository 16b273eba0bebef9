package bench

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSubStreamRecord(t *testing.T) {
	st := &subStream{started: true, start: 10, max: 10}
	for _, o := range []uint64{11, 12, 12, 14, 13, 9, 10, 15, 200} {
		st.record(o)
	}
	// 12 twice: a duplicate; 13 after 14 and 9, 10 (at or below the start):
	// out of order.
	if st.distinct != 6 || st.dup != 1 || st.ooo != 3 || st.max != 200 {
		t.Fatalf("distinct %d dup %d ooo %d max %d", st.distinct, st.dup, st.ooo, st.max)
	}
	n, ranges := st.missing(202)
	if n != 186 || !reflect.DeepEqual(ranges, [][2]uint64{{16, 199}, {201, 202}}) {
		t.Fatalf("missing %d %v", n, ranges)
	}
	if n, _ := (&subStream{started: true, start: 5, max: 5}).missing(5); n != 0 {
		t.Fatalf("missing %d of none", n)
	}
}

func TestSoakLayout(t *testing.T) {
	s := SoakShape{Streams: 2, BulkRate: 1, Subscribers: 3, Slow: 1, WhisperGroups: 2, WhisperGroup: 2, PresenceStreams: 1, Watchers: 2, Churners: 1}
	var got []soakKind
	for i := 0; i < s.total(); i++ {
		k, _ := s.layout(i)
		got = append(got, k)
	}
	want := []soakKind{kindSoakPublisher, kindSoakPublisher, kindSoakPublisher, kindSoakSubscriber, kindSoakSubscriber, kindSoakSubscriber,
		kindSoakSlow, kindSoakWhisperer, kindSoakWhisperer, kindSoakWhisperer, kindSoakWhisperer, kindSoakWatcher, kindSoakWatcher, kindSoakChurner}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("layout %v, want %v", got, want)
	}
	if s.pubStream(2) != ":bulk" || s.pubStream(1) != ":pub:1" {
		t.Fatalf("streams %q %q", s.pubStream(1), s.pubStream(2))
	}
}

func TestSoakWindows(t *testing.T) {
	var samples []SoakSample
	for i := 1; i <= 20; i++ {
		samples = append(samples, SoakSample{T: float64(i), RSS: int64(100 + i), Goroutines: -1})
	}
	first, last, growth := windows(samples, 5*time.Second, 4*time.Second, 20*time.Second, func(s SoakSample) float64 { return float64(s.RSS) })
	// First window: t 5..9, median 107; last: t 16..20, median 118.
	if first != 107 || last != 118 || growth != round3(11.0/107*100) {
		t.Fatalf("first %d last %d growth %v", first, last, growth)
	}
	if f, l, _ := windowsF(samples, time.Second, time.Second, 20*time.Second, func(s SoakSample) float64 { return float64(s.Goroutines) }); f != -1 || l != -1 {
		t.Fatalf("unknown goroutines gave %v %v", f, l)
	}
}

// TestSoakEndToEnd runs the soak scenario for a few seconds at a tiny size
// against a real server: droppers and a slow reader come back with
// recovery, and every subscription still has every publication exactly
// once, in order.
func TestSoakEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ms := time.Millisecond
	c := SoakConfig{
		Duration: 6 * time.Second, Warmup: time.Second, Window: 2 * time.Second, Sample: 500 * ms,
		Streams: 2, Rate: 20, Size: 64, Subscribers: 6,
		// The slow reader's bulk stream fills the kernel's buffers (a few
		// MB on loopback) and the 64 KiB queue in about 2.5 s of its 4 s
		// pause.
		BulkRate: 50, BulkSize: 32 << 10, BulkSubs: 1,
		ReconnectFrac: 0.5, ReconnectEvery: time.Second, Offline: 200 * ms,
		Slow: 1, SlowEvery: time.Second, SlowPause: 4 * time.Second, MaxQueue: 64 << 10,
		WhisperGroups: 2, WhisperGroup: 3, WhisperHz: 10,
		PresenceStreams: 1, Watchers: 2, Churners: 3, Hold: 300 * ms, Rest: 200 * ms, PresenceGrace: time.Second,
		HistorySize: 300, Settle: 500 * ms,
	}
	start := time.Now()
	r, err := RunSoak(ctx, e2eEnv(t, c.ServerArgs()), c)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	WriteTable(&b, r)
	t.Logf("in %s:\n%s", time.Since(start).Round(time.Millisecond), b.String())
	if r.Scenario != "soak" || len(r.Samples) < 10 || r.Samples[0].RSS <= 0 || r.Samples[0].Goroutines <= 0 || r.Samples[0].Conns <= 0 {
		t.Fatalf("samples: %+v", r.Samples)
	}
	if r.Published < 200 || r.Expected == 0 || r.Delivered != r.Expected || r.Lost != 0 || r.Duplicated != 0 ||
		r.OutOfOrder != 0 || r.Mismatched != 0 || r.Behind != 0 || r.NotRecovered != 0 || r.EpochChanges != 0 {
		t.Fatalf("deliveries: published %d expected %d delivered %d lost %d duplicated %d out of order %d mismatched %d behind %d not recovered %d epochs %d",
			r.Published, r.Expected, r.Delivered, r.Lost, r.Duplicated, r.OutOfOrder, r.Mismatched, r.Behind, r.NotRecovered, r.EpochChanges)
	}
	if r.Drops == 0 || r.Reconnects < r.Drops || r.Recoveries == 0 || r.RecoveredPubs == 0 || r.SlowPauses == 0 {
		t.Fatalf("no reconnects with recovery: drops %d reconnects %d recoveries %d recovered pubs %d pauses %d",
			r.Drops, r.Reconnects, r.Recoveries, r.RecoveredPubs, r.SlowPauses)
	}
	if r.Server4008 < 1 {
		// Filling the buffers depends on the machine keeping up.
		t.Logf("the slow reader was not cut with 4008 in its pause (cuts %d)", r.Cuts)
	}
	if r.WhispersSent == 0 || r.WhispersRecv != r.WhispersExpected || r.WhisperDisorder != 0 {
		t.Fatalf("whispers: sent %d delivered %d of %d, disorder %d", r.WhispersSent, r.WhispersRecv, r.WhispersExpected, r.WhisperDisorder)
	}
	if r.Cycles == 0 || r.JoinsSeen+r.UnmatchedLeaves != r.JoinsExpected || r.LeavesSeen != r.JoinsSeen || r.OpenJoins != 0 {
		t.Fatalf("presence: cycles %d joins %d (+%d leave-only) of %d, leaves %d, open %d",
			r.Cycles, r.JoinsSeen, r.UnmatchedLeaves, r.JoinsExpected, r.LeavesSeen, r.OpenJoins)
	}
}
