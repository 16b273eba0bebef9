package redis

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/redistest"
	"github.com/huddle-rt/huddle/storage"
	"github.com/huddle-rt/huddle/storage/storagetest"
)

// TestLog_Conformance_StreamCap runs the suite with a byte cap too large
// to drop anything, so the count bound goes through the script's own
// trimming rather than the XADD's MAXLEN.
func TestLog_Conformance_StreamCap(t *testing.T) {
	c := redistest.Client(t, redistest.URL(t))
	storagetest.Run(t, func(t *testing.T) storage.Log {
		return New(c, Config{Prefix: redistest.Prefix(t, c), MaxStreamBytes: 1 << 20})
	})
}

// newCappedLog returns a Log with a byte cap and a key prefix of its own,
// and a Log without a cap sharing its keys.
func newCappedLog(t *testing.T, maxStreamBytes int) (capped, uncapped *Log) {
	t.Helper()
	c := redistest.Client(t, redistest.URL(t))
	prefix := redistest.Prefix(t, c)
	return New(c, Config{Prefix: prefix, MaxStreamBytes: maxStreamBytes}), New(c, Config{Prefix: prefix})
}

// stored returns a payload that makes a publication with no user or client
// count exactly n bytes against the cap.
func stored(n int) string {
	return strings.Repeat("x", n-storage.PublicationOverhead)
}

// checkBytes checks that the meta counts what the stream's entries count
// for, and returns it.
func checkBytes(t *testing.T, l *Log, stream string) int64 {
	t.Helper()
	entries, err := l.client.Do(t.Context(), l.client.B().Xrange().Key(l.streamKey(stream)).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, e := range entries {
		sum += int64(len(e.FieldValues["d"]) + len(e.FieldValues["u"]) + len(e.FieldValues["c"]) + storage.PublicationOverhead)
	}
	got, _ := do(t, l.client, "HGET", l.metaKey(stream), "bytes").AsInt64()
	if got != sum {
		t.Errorf("meta counts %d bytes, the entries %d", got, sum)
	}
	return sum
}

func TestLog_StreamBytes(t *testing.T) {
	const limit = 3000
	keep := storage.Options{Size: 100, TTL: time.Minute}
	tests := []struct {
		name  string
		sizes []int // StoredBytes of each publication appended
		size  int   // the count bound; 0: keep's
		want  []uint64
	}{
		{name: "under the cap", sizes: []int{1000, 1000, 1000}, want: seq(1, 3)},
		{name: "oldest go first", sizes: []int{1000, 1000, 1000, 1000, 1500}, want: seq(4, 5)},
		{name: "many go for one", sizes: []int{300, 300, 300, 300, 300, 300, 300, 300, 300, 300, 2500}, want: seq(10, 11)},
		{name: "one over the cap is kept alone", sizes: []int{1000, 1000, 5000}, want: seq(3, 3)},
		{name: "and goes when the next comes", sizes: []int{5000, 1000}, want: seq(2, 2)},
		{name: "empty publications count their overhead", sizes: []int{128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128}, want: seq(2, 24)},
		{name: "count bound first", sizes: []int{500, 500, 500, 500}, size: 2, want: seq(3, 4)},
		{name: "both bounds", sizes: []int{200, 200, 200, 1700, 1000}, size: 4, want: seq(3, 5)},
	}
	l, _ := newCappedLog(t, limit)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream := "bytes-" + tc.name
			opts := keep
			if tc.size > 0 {
				opts.Size = tc.size
			}
			for _, n := range tc.sizes {
				mustAppend(t, l, stream, stored(n), opts)
			}
			res := mustRead(t, l, stream, storage.Query{})
			if got := offsets(res.Pubs); !slices.Equal(got, tc.want) {
				t.Errorf("holds %v, want %v", got, tc.want)
			}
			if sum := checkBytes(t, l, stream); sum > limit && len(res.Pubs) > 1 {
				t.Errorf("holds %d bytes in %d publications, over the cap of %d", sum, len(res.Pubs), limit)
			}
		})
	}
}

// TestLog_StreamBytes_Incomplete checks what a recovery sees after its
// publications were dropped for bytes.
func TestLog_StreamBytes_Incomplete(t *testing.T) {
	l, _ := newCappedLog(t, 3000)
	for range 5 {
		mustAppend(t, l, "s", stored(1000), keep) // 1 and 2 dropped
	}
	tests := []struct {
		after    uint64
		want     []uint64
		complete bool
	}{
		{after: 0, want: seq(3, 5)},
		{after: 1, want: seq(3, 5)},
		{after: 2, want: seq(3, 5), complete: true},
		{after: 5, complete: true},
	}
	for _, tc := range tests {
		res := mustRead(t, l, "s", storage.Query{After: storage.Position{Offset: tc.after}})
		if got := offsets(res.Pubs); !slices.Equal(got, tc.want) || res.Complete != tc.complete {
			t.Errorf("after %d: %v, Complete %v; want %v, %v", tc.after, got, res.Complete, tc.want, tc.complete)
		}
	}
}

// TestLog_StreamBytes_Count checks the count in the meta through what can
// happen to it: kept by Appends, dropped while no cap is set and rebuilt
// once one is, reset when the entries are gone, and healed after drifting.
func TestLog_StreamBytes_Count(t *testing.T) {
	l, open := newCappedLog(t, 3000)

	t.Run("user and client count", func(t *testing.T) {
		pub := storage.Publication{Data: []byte("data"), User: "user", Client: "client"}
		if _, _, err := l.Append(t.Context(), "who", pub, keep); err != nil {
			t.Fatal(err)
		}
		if got := checkBytes(t, l, "who"); got != int64(pub.StoredBytes()) {
			t.Errorf("counts %d, want %d", got, pub.StoredBytes())
		}
	})

	t.Run("rebuilt when the cap comes", func(t *testing.T) {
		for range 5 {
			mustAppend(t, open, "late", stored(1000), keep)
		}
		if v, _ := do(t, l.client, "HEXISTS", l.metaKey("late"), "bytes").AsInt64(); v != 0 {
			t.Fatal("an Append without a cap left a byte count")
		}
		mustAppend(t, l, "late", stored(1000), keep)
		if got := offsets(mustRead(t, l, "late", storage.Query{}).Pubs); !slices.Equal(got, seq(4, 6)) {
			t.Errorf("holds %v, want [4 5 6]", got)
		}
		checkBytes(t, l, "late")
		mustAppend(t, open, "late", stored(1000), keep)
		if v, _ := do(t, l.client, "HEXISTS", l.metaKey("late"), "bytes").AsInt64(); v != 0 {
			t.Error("an Append without a cap kept a count nobody keeps up to date")
		}
	})

	t.Run("reset when the entries expired", func(t *testing.T) {
		mustAppend(t, l, "expired", stored(2000), keep)
		do(t, l.client, "DEL", l.streamKey("expired")) // as if its PEXPIRE fired
		mustAppend(t, l, "expired", stored(2000), keep)
		if got := checkBytes(t, l, "expired"); got != 2000 {
			t.Errorf("counts %d, want 2000", got)
		}
	})

	t.Run("an overcount heals", func(t *testing.T) {
		mustAppend(t, l, "drift", stored(500), keep)
		mustAppend(t, l, "drift", stored(500), keep)
		do(t, l.client, "HSET", l.metaKey("drift"), "bytes", "1000000")
		mustAppend(t, l, "drift", stored(500), keep)
		checkBytes(t, l, "drift")
		mustAppend(t, l, "drift", stored(500), keep)
		if got := offsets(mustRead(t, l, "drift", storage.Query{}).Pubs); !slices.Equal(got, seq(3, 4)) {
			t.Errorf("holds %v, want [3 4]", got)
		}
	})

	t.Run("size zero drops the count", func(t *testing.T) {
		mustAppend(t, l, "zero", stored(500), keep)
		mustAppend(t, l, "zero", stored(500), storage.Options{})
		if v, _ := do(t, l.client, "HEXISTS", l.metaKey("zero"), "bytes").AsInt64(); v != 0 {
			t.Error("an Append with no history kept a byte count")
		}
	})
}

// TestLog_ReadMaxBytes_Large reads a window of large publications with a
// small byte cap: the reply holds what the cap allows, in either order.
func TestLog_ReadMaxBytes_Large(t *testing.T) {
	l, _ := newLog(t)
	const size = 256 << 10
	for i := range 40 {
		mustAppend(t, l, "big", strings.Repeat(fmt.Sprint(i%10), size), storage.Options{Size: 100, TTL: time.Minute})
	}
	tests := []struct {
		q    storage.Query
		want []uint64
	}{
		{storage.Query{MaxBytes: 600 << 10}, seq(1, 2)},
		{storage.Query{MaxBytes: 1}, seq(1, 1)},
		{storage.Query{After: storage.Position{Offset: 30}, MaxBytes: 4 << 20}, seq(31, 40)},
		{storage.Query{Reverse: true, MaxBytes: 1 << 20}, []uint64{40, 39, 38, 37}},
	}
	for _, tc := range tests {
		res := mustRead(t, l, "big", tc.q)
		if got := offsets(res.Pubs); !slices.Equal(got, tc.want) {
			t.Errorf("Read(%+v) = %v, want %v", tc.q, got, tc.want)
		}
		for _, p := range res.Pubs {
			if len(p.Data) != size || p.Data[0] != byte('0'+(p.Offset-1)%10) {
				t.Errorf("offset %d: %d bytes starting %q", p.Offset, len(p.Data), p.Data[:1])
			}
		}
	}
}
