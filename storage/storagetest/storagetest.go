// Package storagetest is the conformance suite every storage.Log backend
// runs, so the memory and Redis logs promise the same things.
//
// It relies only on the storage.Log contract: no fake clock, no backend
// internals. Bounds in time use short real durations, and every subtest
// uses stream names of its own, so the suite can run against a shared,
// long-lived backend.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/storage"
)

// Run runs the conformance suite. newLog is called once per subtest and
// must return a ready Log; it should register its own cleanup with
// t.Cleanup. Subtests run in parallel.
func Run(t *testing.T, newLog func(t *testing.T) storage.Log) {
	tests := []struct {
		name string
		fn   func(t *testing.T, l storage.Log)
	}{
		{"OffsetsContiguousFromOne", testOffsetsContiguous},
		{"TopUnknownStream", testTopUnknownStream},
		{"ReadUnknownStream", testReadUnknownStream},
		{"Read", testRead},
		{"ReadMaxBytes", testReadMaxBytes},
		{"ReadMaxBytesModel", testReadMaxBytesModel},
		{"EpochMismatch", testEpochMismatch},
		{"SizeBound", testSizeBound},
		{"SizeZeroStillNumbers", testSizeZero},
		{"TTL", testTTL},
		{"MetaTTL", testMetaTTL},
		{"ConcurrentAppends", testConcurrentAppends},
		{"StreamsIndependent", testStreamsIndependent},
		{"RoundTrip", testRoundTrip},
		{"ResultNotAliased", testResultNotAliased},
		{"CanceledContext", testCanceledContext},
		{"DocumentKeepsEverything", testDocumentKeepsEverything},
		{"DocumentCompact", testDocumentCompact},
		{"DocumentCompactChecks", testDocumentCompactChecks},
		{"DocumentReadLimits", testDocumentReadLimits},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newLog(t))
		})
	}
}

// keep is a bound large enough that nothing in a test is evicted.
var keep = storage.Options{Size: 1000, TTL: time.Minute}

// streamName returns a stream name no other test or earlier run uses.
func streamName(t *testing.T, suffix string) string {
	t.Helper()
	return fmt.Sprintf("storagetest:%s:%s:%s", t.Name(), rand.Text()[:10], suffix)
}

// appendN appends n publications with data "0", "1", ... and returns the
// positions Append reported.
func appendN(t *testing.T, l storage.Log, stream string, n int, opts storage.Options) []storage.Position {
	t.Helper()
	positions := make([]storage.Position, n)
	for i := range n {
		_, pos, err := l.Append(t.Context(), stream, storage.Publication{Data: fmt.Appendf(nil, "%d", i)}, opts)
		if err != nil {
			t.Fatalf("Append #%d: %v", i, err)
		}
		positions[i] = pos
	}
	return positions
}

func read(t *testing.T, l storage.Log, stream string, q storage.Query) storage.Result {
	t.Helper()
	res, err := l.Read(t.Context(), stream, q)
	if err != nil {
		t.Fatalf("Read(%+v): %v", q, err)
	}
	return res
}

func top(t *testing.T, l storage.Log, stream string) storage.Position {
	t.Helper()
	pos, err := l.Top(t.Context(), stream)
	if err != nil {
		t.Fatalf("Top: %v", err)
	}
	return pos
}

func offsets(pubs []storage.Publication) []uint64 {
	out := make([]uint64, len(pubs))
	for i, p := range pubs {
		out[i] = p.Offset
	}
	return out
}

// span returns the offsets from, from±1, ... to, in either direction.
func span(from, to uint64) []uint64 {
	var out []uint64
	for o := from; ; {
		out = append(out, o)
		if o == to {
			return out
		}
		if from < to {
			o++
		} else {
			o--
		}
	}
}

func testOffsetsContiguous(t *testing.T, l storage.Log) {
	stream := streamName(t, "s")
	positions := appendN(t, l, stream, 5, keep)
	epoch := positions[0].Epoch
	if epoch == "" {
		t.Fatal("Append returned an empty epoch")
	}
	for i, pos := range positions {
		want := storage.Position{Epoch: epoch, Offset: uint64(i + 1)}
		if pos != want {
			t.Errorf("Append #%d position = %+v, want %+v", i, pos, want)
		}
	}
	if got, want := top(t, l, stream), (storage.Position{Epoch: epoch, Offset: 5}); got != want {
		t.Errorf("Top = %+v, want %+v", got, want)
	}
}

func testTopUnknownStream(t *testing.T, l storage.Log) {
	stream := streamName(t, "s")
	first := top(t, l, stream)
	if first.Epoch == "" || first.Offset != 0 {
		t.Fatalf("Top of unknown stream = %+v, want a fresh epoch and offset 0", first)
	}
	if again := top(t, l, stream); again != first {
		t.Errorf("second Top = %+v, want %+v", again, first)
	}
	_, pos, err := l.Append(t.Context(), stream, storage.Publication{Data: []byte("x")}, keep)
	if err != nil {
		t.Fatal(err)
	}
	if want := (storage.Position{Epoch: first.Epoch, Offset: 1}); pos != want {
		t.Errorf("Append after Top = %+v, want %+v", pos, want)
	}
}

func testReadUnknownStream(t *testing.T, l storage.Log) {
	stream := streamName(t, "s")
	res := read(t, l, stream, storage.Query{})
	if len(res.Pubs) != 0 || res.More || !res.Complete {
		t.Errorf("Read of unknown stream = %+v, want empty and complete", res)
	}
	if res.Top.Epoch == "" || res.Top.Offset != 0 {
		t.Fatalf("Read of unknown stream Top = %+v, want a fresh epoch and offset 0", res.Top)
	}
	if got := top(t, l, stream); got != res.Top {
		t.Errorf("Top after Read = %+v, want %+v", got, res.Top)
	}
}

func testRead(t *testing.T, l storage.Log) {
	stream := streamName(t, "s")
	positions := appendN(t, l, stream, 10, keep)
	tp := positions[len(positions)-1]

	tests := []struct {
		name string
		q    storage.Query
		want []uint64
		more bool
	}{
		{name: "all", q: storage.Query{}, want: span(1, 10)},
		{name: "after", q: storage.Query{After: storage.Position{Offset: 3}}, want: span(4, 10)},
		{name: "after with epoch", q: storage.Query{After: tp}, want: nil},
		{name: "after with epoch behind", q: storage.Query{After: storage.Position{Epoch: tp.Epoch, Offset: 7}}, want: span(8, 10)},
		{name: "limit", q: storage.Query{After: storage.Position{Offset: 3}, Limit: 2}, want: span(4, 5), more: true},
		{name: "limit exact", q: storage.Query{After: storage.Position{Offset: 8}, Limit: 2}, want: span(9, 10)},
		{name: "limit over", q: storage.Query{After: storage.Position{Offset: 8}, Limit: 5}, want: span(9, 10)},
		{name: "at top", q: storage.Query{After: storage.Position{Offset: 10}}, want: nil},
		{name: "beyond top", q: storage.Query{After: storage.Position{Offset: 12}}, want: nil},
		{name: "reverse", q: storage.Query{Reverse: true}, want: span(10, 1)},
		{name: "reverse limit", q: storage.Query{Reverse: true, Limit: 3}, want: span(10, 8), more: true},
		{name: "reverse after", q: storage.Query{After: storage.Position{Offset: 7}, Reverse: true}, want: span(10, 8)},
		{name: "reverse after limit", q: storage.Query{After: storage.Position{Offset: 4}, Reverse: true, Limit: 2}, want: span(10, 9), more: true},
		{name: "reverse after limit over", q: storage.Query{After: storage.Position{Offset: 7}, Reverse: true, Limit: 5}, want: span(10, 8)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := read(t, l, stream, tc.q)
			if got := offsets(res.Pubs); !slices.Equal(got, tc.want) {
				t.Errorf("offsets = %v, want %v", got, tc.want)
			}
			if res.More != tc.more {
				t.Errorf("More = %v, want %v", res.More, tc.more)
			}
			if !res.Complete {
				t.Error("Complete = false, want true")
			}
			if res.Top != tp {
				t.Errorf("Top = %+v, want %+v", res.Top, tp)
			}
			for _, p := range res.Pubs {
				if want := fmt.Sprint(p.Offset - 1); string(p.Data) != want {
					t.Errorf("offset %d data = %q, want %q", p.Offset, p.Data, want)
				}
			}
		})
	}
}

// testReadMaxBytes checks the byte cap on publications of uneven sizes:
// it counts Data only, always lets the first publication through, and cuts
// before the one that would cross it.
func testReadMaxBytes(t *testing.T, l storage.Log) {
	stream := streamName(t, "s")
	sizes := []int{50, 5, 5, 5, 50, 5} // offsets 1..6
	for i, n := range sizes {
		pub := storage.Publication{Data: bytes.Repeat([]byte{byte('a' + i)}, n), User: "u", Client: "c"}
		if _, _, err := l.Append(t.Context(), stream, pub, keep); err != nil {
			t.Fatal(err)
		}
	}
	after := func(o uint64) storage.Position { return storage.Position{Offset: o} }
	tests := []struct {
		name string
		q    storage.Query
		want []uint64
		more bool
	}{
		{name: "first alone over the cap", q: storage.Query{MaxBytes: 10}, want: span(1, 1), more: true},
		{name: "one byte", q: storage.Query{MaxBytes: 1}, want: span(1, 1), more: true},
		{name: "exactly", q: storage.Query{MaxBytes: 65}, want: span(1, 4), more: true},
		{name: "all fit exactly", q: storage.Query{MaxBytes: 120}, want: span(1, 6)},
		{name: "all fit", q: storage.Query{MaxBytes: 1 << 20}, want: span(1, 6)},
		{name: "after", q: storage.Query{After: after(1), MaxBytes: 15}, want: span(2, 4), more: true},
		{name: "after, cut before a large one", q: storage.Query{After: after(1), MaxBytes: 65}, want: span(2, 5), more: true},
		{name: "after, rest fits", q: storage.Query{After: after(4), MaxBytes: 55}, want: span(5, 6)},
		{name: "limit cuts first", q: storage.Query{Limit: 2, MaxBytes: 1000}, want: span(1, 2), more: true},
		{name: "bytes cut before limit", q: storage.Query{After: after(1), Limit: 5, MaxBytes: 10}, want: span(2, 3), more: true},
		{name: "limit and bytes agree", q: storage.Query{After: after(4), Limit: 2, MaxBytes: 55}, want: span(5, 6)},
		{name: "at top", q: storage.Query{After: after(6), MaxBytes: 1}},
		{name: "reverse", q: storage.Query{Reverse: true, MaxBytes: 10}, want: span(6, 6), more: true},
		{name: "reverse, cut after a large one", q: storage.Query{Reverse: true, MaxBytes: 59}, want: span(6, 5), more: true},
		{name: "reverse, all fit", q: storage.Query{Reverse: true, MaxBytes: 120}, want: span(6, 1)},
		{name: "reverse after", q: storage.Query{After: after(4), Reverse: true, MaxBytes: 1}, want: span(6, 6), more: true},
		{name: "reverse after, rest fits", q: storage.Query{After: after(3), Reverse: true, MaxBytes: 60}, want: span(6, 4)},
		{name: "reverse limit", q: storage.Query{Reverse: true, Limit: 1, MaxBytes: 1000}, want: span(6, 6), more: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := read(t, l, stream, tc.q)
			if got := offsets(res.Pubs); !slices.Equal(got, tc.want) {
				t.Errorf("offsets = %v, want %v", got, tc.want)
			}
			if res.More != tc.more {
				t.Errorf("More = %v, want %v", res.More, tc.more)
			}
			if !res.Complete {
				t.Error("Complete = false, want true: a byte cap on the read loses nothing")
			}
			for _, p := range res.Pubs {
				want := bytes.Repeat([]byte{byte('a' + p.Offset - 1)}, sizes[p.Offset-1])
				if !bytes.Equal(p.Data, want) || p.User != "u" || p.Client != "c" {
					t.Errorf("offset %d = %q (%q, %q), want %q", p.Offset, p.Data, p.User, p.Client, want)
				}
			}
		})
	}
}

// testReadMaxBytesModel compares reads with a byte cap over many
// publications of mixed sizes, a few large among small ones, with what the
// contract says they must return, so that a backend reading in pages is
// checked across page boundaries.
func testReadMaxBytesModel(t *testing.T, l storage.Log) {
	const n = 150
	stream := streamName(t, "s")
	sizes := make([]int, n)
	for i := range sizes {
		sizes[i] = (i * 37) % 100
		if i%23 == 5 {
			sizes[i] = 3000 + i
		}
		pub := storage.Publication{Data: bytes.Repeat([]byte{byte(i)}, sizes[i])}
		if _, _, err := l.Append(t.Context(), stream, pub, keep); err != nil {
			t.Fatal(err)
		}
	}
	for _, after := range []uint64{0, 1, 6, 70, 148} {
		for _, limit := range []int{0, 1, 7, 60} {
			for _, maxBytes := range []int{1, 99, 500, 3100, 9000, 1 << 20} {
				for _, reverse := range []bool{false, true} {
					q := storage.Query{After: storage.Position{Offset: after}, Limit: limit, MaxBytes: maxBytes, Reverse: reverse}
					var want []uint64
					for o := after + 1; o <= n; o++ {
						want = append(want, o)
					}
					if reverse {
						slices.Reverse(want)
					}
					more := false
					if limit > 0 && len(want) > limit {
						want, more = want[:limit], true
					}
					sum := 0
					for i, o := range want {
						sum += sizes[o-1]
						if sum > maxBytes && i > 0 {
							want, more = want[:i], true
							break
						}
					}
					res := read(t, l, stream, q)
					if got := offsets(res.Pubs); !slices.Equal(got, want) || res.More != more || !res.Complete {
						t.Fatalf("Read(%+v) = %v, More %v, Complete %v; want %v, More %v, complete", q, got, res.More, res.Complete, want, more)
					}
					for _, p := range res.Pubs {
						if len(p.Data) != sizes[p.Offset-1] || (len(p.Data) > 0 && p.Data[0] != byte(p.Offset-1)) {
							t.Fatalf("Read(%+v): offset %d has %d bytes of %v, want %d of %d", q, p.Offset, len(p.Data), p.Data[:min(len(p.Data), 1)], sizes[p.Offset-1], byte(p.Offset-1))
						}
					}
				}
			}
		}
	}
}

func testEpochMismatch(t *testing.T, l storage.Log) {
	stream := streamName(t, "s")
	positions := appendN(t, l, stream, 3, keep)
	tp := positions[len(positions)-1]
	res, err := l.Read(t.Context(), stream, storage.Query{After: storage.Position{Epoch: "not-" + tp.Epoch, Offset: 1}})
	if !errors.Is(err, storage.ErrEpochMismatch) {
		t.Fatalf("Read error = %v, want ErrEpochMismatch", err)
	}
	if res.Top != tp {
		t.Errorf("Top with mismatch = %+v, want %+v", res.Top, tp)
	}
	if len(res.Pubs) != 0 {
		t.Errorf("Pubs with mismatch = %v, want none", offsets(res.Pubs))
	}
}

func testSizeBound(t *testing.T, l storage.Log) {
	stream := streamName(t, "s")
	opts := storage.Options{Size: 3, TTL: time.Minute}
	appendN(t, l, stream, 10, opts)

	tests := []struct {
		name     string
		q        storage.Query
		want     []uint64
		complete bool
		more     bool
	}{
		{name: "behind the window", q: storage.Query{}, want: span(8, 10)},
		{name: "just behind the window", q: storage.Query{After: storage.Position{Offset: 6}}, want: span(8, 10)},
		{name: "at the window", q: storage.Query{After: storage.Position{Offset: 7}}, want: span(8, 10), complete: true},
		{name: "inside the window", q: storage.Query{After: storage.Position{Offset: 8}}, want: span(9, 10), complete: true},
		{name: "at top", q: storage.Query{After: storage.Position{Offset: 10}}, complete: true},
		{name: "behind, limit", q: storage.Query{Limit: 2}, want: span(8, 9), more: true},
		{name: "behind, reverse limit", q: storage.Query{Reverse: true, Limit: 2}, want: span(10, 9), more: true},
		{name: "behind, max bytes", q: storage.Query{MaxBytes: 1}, want: span(8, 8), more: true},
		{name: "at the window, max bytes", q: storage.Query{After: storage.Position{Offset: 7}, MaxBytes: 2}, want: span(8, 9), complete: true, more: true},
		{name: "behind, reverse max bytes", q: storage.Query{Reverse: true, MaxBytes: 2}, want: span(10, 9), more: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := read(t, l, stream, tc.q)
			if got := offsets(res.Pubs); !slices.Equal(got, tc.want) {
				t.Errorf("offsets = %v, want %v", got, tc.want)
			}
			if res.Complete != tc.complete {
				t.Errorf("Complete = %v, want %v", res.Complete, tc.complete)
			}
			if res.More != tc.more {
				t.Errorf("More = %v, want %v", res.More, tc.more)
			}
			if res.Top.Offset != 10 {
				t.Errorf("Top.Offset = %d, want 10", res.Top.Offset)
			}
		})
	}
}

func testSizeZero(t *testing.T, l storage.Log) {
	stream := streamName(t, "s")
	positions := appendN(t, l, stream, 3, storage.Options{})
	for i, pos := range positions {
		if pos.Offset != uint64(i+1) || pos.Epoch != positions[0].Epoch {
			t.Errorf("Append #%d position = %+v, want offset %d in epoch %q", i, pos, i+1, positions[0].Epoch)
		}
	}
	res := read(t, l, stream, storage.Query{})
	if len(res.Pubs) != 0 || res.Complete {
		t.Errorf("Read after 0 = %d pubs, Complete %v; want none, incomplete", len(res.Pubs), res.Complete)
	}
	res = read(t, l, stream, storage.Query{After: storage.Position{Offset: 3}})
	if len(res.Pubs) != 0 || !res.Complete {
		t.Errorf("Read at top = %d pubs, Complete %v; want none, complete", len(res.Pubs), res.Complete)
	}
}

func testTTL(t *testing.T, l storage.Log) {
	const ttl = 200 * time.Millisecond
	stream := streamName(t, "s")
	opts := storage.Options{Size: 10, TTL: ttl}
	positions := appendN(t, l, stream, 3, opts)
	tp := positions[len(positions)-1]
	if res := read(t, l, stream, storage.Query{}); len(res.Pubs) != 3 || !res.Complete {
		t.Fatalf("Read before TTL = %v, Complete %v; want 3 publications, complete", offsets(res.Pubs), res.Complete)
	}

	time.Sleep(ttl + 150*time.Millisecond)
	res := read(t, l, stream, storage.Query{})
	if len(res.Pubs) != 0 || res.Complete {
		t.Errorf("Read after TTL = %v, Complete %v; want none, incomplete", offsets(res.Pubs), res.Complete)
	}
	if res.Top != tp {
		t.Errorf("Top after TTL = %+v, want %+v (meta outlives the TTL)", res.Top, tp)
	}
	res = read(t, l, stream, storage.Query{After: tp})
	if len(res.Pubs) != 0 || !res.Complete {
		t.Errorf("Read at top after TTL: Complete %v, want true", res.Complete)
	}

	_, pos, err := l.Append(t.Context(), stream, storage.Publication{Data: []byte("late")}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := (storage.Position{Epoch: tp.Epoch, Offset: 4}); pos != want {
		t.Errorf("Append after TTL = %+v, want %+v", pos, want)
	}
	res = read(t, l, stream, storage.Query{After: tp})
	if got := offsets(res.Pubs); !slices.Equal(got, []uint64{4}) || !res.Complete {
		t.Errorf("Read after new Append = %v, Complete %v; want [4], complete", got, res.Complete)
	}
}

// testMetaTTL checks the restart after the meta is forgotten: a new epoch,
// offsets from 1 again, and none of the old publications served under the
// new offsets, even with no age bound on them.
func testMetaTTL(t *testing.T, l storage.Log) {
	const metaTTL = 150 * time.Millisecond
	stream := streamName(t, "s")
	opts := storage.Options{Size: 10, MetaTTL: metaTTL}
	positions := appendN(t, l, stream, 3, opts)
	old := positions[len(positions)-1]

	time.Sleep(metaTTL + 150*time.Millisecond)
	pub, pos, err := l.Append(t.Context(), stream, storage.Publication{Data: []byte("new")}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if pos.Offset != 1 || pos.Epoch == old.Epoch || pos.Epoch == "" {
		t.Fatalf("Append after MetaTTL = %+v, want offset 1 in a new epoch (old %q)", pos, old.Epoch)
	}
	res := read(t, l, stream, storage.Query{})
	if len(res.Pubs) != 1 || res.Pubs[0].Offset != 1 || string(res.Pubs[0].Data) != "new" {
		t.Errorf("Read after restart = %+v, want only %+v", res.Pubs, pub)
	}
	if _, err := l.Read(t.Context(), stream, storage.Query{After: old}); !errors.Is(err, storage.ErrEpochMismatch) {
		t.Errorf("Read from the old epoch: error = %v, want ErrEpochMismatch", err)
	}
}

func testConcurrentAppends(t *testing.T, l storage.Log) {
	const (
		writers = 16
		each    = 64
		total   = writers * each
	)
	stream := streamName(t, "s")
	opts := storage.Options{Size: total, TTL: time.Minute}
	ctx := t.Context()
	var (
		mu     sync.Mutex
		data   = make(map[uint64]string, total) // offset -> data appended
		epochs = make(map[string]bool)
		wg     sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				d := fmt.Sprintf("w%d-%d", w, i)
				pub, pos, err := l.Append(ctx, stream, storage.Publication{Data: []byte(d)}, opts)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				if prev, dup := data[pos.Offset]; dup {
					t.Errorf("offset %d assigned twice: %q and %q", pos.Offset, prev, d)
				}
				if pub.Offset != pos.Offset {
					t.Errorf("publication offset %d, position offset %d", pub.Offset, pos.Offset)
				}
				data[pos.Offset] = d
				epochs[pos.Epoch] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(epochs) != 1 {
		t.Errorf("appends saw %d epochs, want 1", len(epochs))
	}
	for o := uint64(1); o <= total; o++ {
		if _, ok := data[o]; !ok {
			t.Fatalf("offset %d never assigned", o)
		}
	}
	res := read(t, l, stream, storage.Query{})
	if got := offsets(res.Pubs); !slices.Equal(got, span(1, total)) {
		t.Fatalf("Read offsets = %v..., want 1..%d", got[:min(len(got), 10)], total)
	}
	for _, p := range res.Pubs {
		if string(p.Data) != data[p.Offset] {
			t.Errorf("offset %d data = %q, want %q", p.Offset, p.Data, data[p.Offset])
		}
	}
}

func testStreamsIndependent(t *testing.T, l storage.Log) {
	a, b := streamName(t, "a"), streamName(t, "b")
	appendN(t, l, a, 3, keep)
	_, pos, err := l.Append(t.Context(), b, storage.Publication{Data: []byte("b")}, keep)
	if err != nil {
		t.Fatal(err)
	}
	if pos.Offset != 1 {
		t.Errorf("first Append to b: offset %d, want 1", pos.Offset)
	}
	if got := offsets(read(t, l, a, storage.Query{}).Pubs); !slices.Equal(got, span(1, 3)) {
		t.Errorf("a offsets = %v, want [1 2 3]", got)
	}
	res := read(t, l, b, storage.Query{})
	if len(res.Pubs) != 1 || string(res.Pubs[0].Data) != "b" {
		t.Errorf("b = %+v, want only its own publication", res.Pubs)
	}
	// Different bounds on one stream leave the other alone.
	appendN(t, l, b, 5, storage.Options{Size: 1})
	if got := offsets(read(t, l, a, storage.Query{}).Pubs); !slices.Equal(got, span(1, 3)) {
		t.Errorf("a offsets after b shrank = %v, want [1 2 3]", got)
	}
}

func testRoundTrip(t *testing.T, l storage.Log) {
	stream := streamName(t, "s")
	tests := []storage.Publication{
		{Data: []byte{0x81, 0xa1, 'k', 0x00, 0xff, '\n', 0x00}, User: "user-1", Client: "client-1"},
		{Data: []byte(strings.Repeat("é", 1000)), User: "ünïcode user", Client: "c:2"},
		{Data: []byte("server-side")},
		{Data: []byte{}, User: "u"},
	}
	var stored []storage.Publication
	for i, in := range tests {
		before := time.Now().Add(-time.Second).UnixMilli()
		out, pos, err := l.Append(t.Context(), stream, in, keep)
		after := time.Now().Add(time.Second).UnixMilli()
		if err != nil {
			t.Fatal(err)
		}
		if out.Offset != pos.Offset || out.Offset != uint64(i+1) {
			t.Errorf("Append #%d offset %d (position %d), want %d", i, out.Offset, pos.Offset, i+1)
		}
		if out.Time < before || out.Time > after {
			t.Errorf("Append #%d Time = %d, want about now (%d..%d)", i, out.Time, before, after)
		}
		if !bytes.Equal(out.Data, in.Data) || out.User != in.User || out.Client != in.Client {
			t.Errorf("Append #%d returned %+v, want the fields of %+v", i, out, in)
		}
		stored = append(stored, out)
	}
	res := read(t, l, stream, storage.Query{})
	if len(res.Pubs) != len(stored) {
		t.Fatalf("Read %d publications, want %d", len(res.Pubs), len(stored))
	}
	for i, got := range res.Pubs {
		want := stored[i]
		if got.Offset != want.Offset || !bytes.Equal(got.Data, want.Data) ||
			got.User != want.User || got.Client != want.Client || got.Time != want.Time {
			t.Errorf("Read #%d = %+v, want %+v", i, got, want)
		}
	}
}

// testResultNotAliased checks that a Read result stays as it was while the
// stream moves on and evicts what was read.
func testResultNotAliased(t *testing.T, l storage.Log) {
	stream := streamName(t, "s")
	opts := storage.Options{Size: 4, TTL: time.Minute}
	appendN(t, l, stream, 4, opts)
	res := read(t, l, stream, storage.Query{})
	want := slices.Clone(res.Pubs)
	appendN(t, l, stream, 10, opts)
	for i := range want {
		if res.Pubs[i].Offset != want[i].Offset || !bytes.Equal(res.Pubs[i].Data, want[i].Data) {
			t.Fatalf("earlier Read result changed: #%d = %+v, want %+v", i, res.Pubs[i], want[i])
		}
	}
}

func testCanceledContext(t *testing.T, l storage.Log) {
	stream := streamName(t, "s")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := l.Append(ctx, stream, storage.Publication{Data: []byte("x")}, keep); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with canceled context: error = %v, want context.Canceled", err)
	}
	if _, err := l.Read(ctx, stream, storage.Query{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Read with canceled context: error = %v, want context.Canceled", err)
	}
	if _, err := l.Top(ctx, stream); !errors.Is(err, context.Canceled) {
		t.Errorf("Top with canceled context: error = %v, want context.Canceled", err)
	}
	// Nothing was stored by the canceled Append.
	if pos := top(t, l, stream); pos.Offset != 0 {
		t.Errorf("Top after canceled Append = %+v, want offset 0", pos)
	}
}

// doc is the options of a document stream; Size and TTL must be ignored.
var doc = storage.Options{Document: true, Size: 2, TTL: time.Millisecond}

func compactor(t *testing.T, l storage.Log) storage.Compactor {
	t.Helper()
	c, ok := l.(storage.Compactor)
	if !ok {
		t.Fatalf("%T does not keep documents (storage.Compactor)", l)
	}
	return c
}

func compact(t *testing.T, l storage.Log, stream string, at storage.Position, data string) bool {
	t.Helper()
	ok, err := compactor(t, l).Compact(t.Context(), stream, at, []byte(data), doc)
	if err != nil {
		t.Fatalf("Compact(%+v): %v", at, err)
	}
	return ok
}

func datas(pubs []storage.Publication) []string {
	out := make([]string, len(pubs))
	for i, p := range pubs {
		out[i] = string(p.Data)
	}
	return out
}

// A document ignores the count and age bounds: every publication stays.
func testDocumentKeepsEverything(t *testing.T, l storage.Log) {
	compactor(t, l)
	s := streamName(t, "doc")
	appendN(t, l, s, 50, doc)
	time.Sleep(20 * time.Millisecond) // well past the (ignored) TTL
	res := read(t, l, s, storage.Query{})
	if len(res.Pubs) != 50 || !res.Complete || res.Snapshot || res.Top.Offset != 50 {
		t.Fatalf("read = %d pubs, complete %v, snapshot %v, top %d; want all 50, complete, no snapshot", len(res.Pubs), res.Complete, res.Snapshot, res.Top.Offset)
	}
	if got := offsets(res.Pubs); got[0] != 1 || got[49] != 50 {
		t.Fatalf("offsets %v", got)
	}
}

// A snapshot replaces the publications through its offset: a read from
// before it starts with the snapshot, then the tail; a read from after it
// sees only the tail.
func testDocumentCompact(t *testing.T, l storage.Log) {
	s := streamName(t, "doc")
	pos := appendN(t, l, s, 10, doc)
	if !compact(t, l, s, pos[5], "snap@6") {
		t.Fatal("first compact not applied")
	}
	appendN(t, l, s, 2, doc) // offsets 11, 12
	for _, after := range []uint64{0, 3, 5} {
		res := read(t, l, s, storage.Query{After: storage.Position{Epoch: pos[0].Epoch, Offset: after}})
		if !res.Snapshot || !res.Complete || res.Top.Offset != 12 {
			t.Fatalf("after %d: snapshot %v complete %v top %d", after, res.Snapshot, res.Complete, res.Top.Offset)
		}
		if got, want := offsets(res.Pubs), []uint64{6, 7, 8, 9, 10, 11, 12}; !slices.Equal(got, want) {
			t.Fatalf("after %d: offsets %v, want %v", after, got, want)
		}
		if string(res.Pubs[0].Data) != "snap@6" || string(res.Pubs[1].Data) != "6" {
			t.Fatalf("after %d: data %q", after, datas(res.Pubs))
		}
	}
	res := read(t, l, s, storage.Query{After: storage.Position{Offset: 6}})
	if res.Snapshot || !res.Complete || !slices.Equal(offsets(res.Pubs), []uint64{7, 8, 9, 10, 11, 12}) {
		t.Fatalf("after 6: snapshot %v complete %v offsets %v", res.Snapshot, res.Complete, offsets(res.Pubs))
	}
	// An older or equal snapshot is not applied; a newer one is.
	if compact(t, l, s, pos[5], "again@6") || compact(t, l, s, pos[2], "old@3") {
		t.Fatal("a snapshot not past the current one was applied")
	}
	top := top(t, l, s)
	if !compact(t, l, s, top, "snap@12") {
		t.Fatal("compact at the top not applied")
	}
	res = read(t, l, s, storage.Query{})
	if !res.Snapshot || len(res.Pubs) != 1 || string(res.Pubs[0].Data) != "snap@12" || res.Pubs[0].Offset != 12 {
		t.Fatalf("after compact at top: snapshot %v pubs %q", res.Snapshot, datas(res.Pubs))
	}
	// Reverse reads never include the snapshot.
	appendN(t, l, s, 1, doc)
	res = read(t, l, s, storage.Query{Reverse: true, Limit: 10})
	if res.Snapshot || !slices.Equal(offsets(res.Pubs), []uint64{13}) {
		t.Fatalf("reverse: snapshot %v offsets %v", res.Snapshot, offsets(res.Pubs))
	}
}

func testDocumentCompactChecks(t *testing.T, l storage.Log) {
	c := compactor(t, l)
	s := streamName(t, "doc")
	pos := appendN(t, l, s, 3, doc)
	if _, err := c.Compact(t.Context(), s, storage.Position{Epoch: pos[0].Epoch, Offset: 4}, []byte("x"), doc); !errors.Is(err, storage.ErrSnapshotAhead) {
		t.Fatalf("compact past the top: %v, want ErrSnapshotAhead", err)
	}
	if _, err := c.Compact(t.Context(), s, storage.Position{Epoch: "not-the-epoch", Offset: 2}, []byte("x"), doc); !errors.Is(err, storage.ErrEpochMismatch) {
		t.Fatalf("compact in another epoch: %v, want ErrEpochMismatch", err)
	}
	if ok, err := c.Compact(t.Context(), s, storage.Position{Epoch: pos[0].Epoch}, []byte("x"), doc); ok || err != nil {
		t.Fatalf("compact at 0 = %v, %v; want not applied", ok, err)
	}
	res := read(t, l, s, storage.Query{})
	if res.Snapshot || len(res.Pubs) != 3 {
		t.Fatalf("refused compacts changed the document: snapshot %v, %d pubs", res.Snapshot, len(res.Pubs))
	}
}

// Limit and MaxBytes count the snapshot as the first item of the result.
func testDocumentReadLimits(t *testing.T, l storage.Log) {
	s := streamName(t, "doc")
	pos := appendN(t, l, s, 6, doc)
	compact(t, l, s, pos[1], strings.Repeat("s", 100))
	res := read(t, l, s, storage.Query{Limit: 1})
	if !res.Snapshot || len(res.Pubs) != 1 || !res.More {
		t.Fatalf("limit 1: snapshot %v, %d pubs, more %v", res.Snapshot, len(res.Pubs), res.More)
	}
	res = read(t, l, s, storage.Query{Limit: 3})
	if !res.Snapshot || !slices.Equal(offsets(res.Pubs), []uint64{2, 3, 4}) || !res.More {
		t.Fatalf("limit 3: snapshot %v, offsets %v, more %v", res.Snapshot, offsets(res.Pubs), res.More)
	}
	// The snapshot alone is over the cap: it still comes, alone.
	res = read(t, l, s, storage.Query{MaxBytes: 50})
	if !res.Snapshot || len(res.Pubs) != 1 || !res.More {
		t.Fatalf("max bytes 50: snapshot %v, %d pubs, more %v", res.Snapshot, len(res.Pubs), res.More)
	}
	res = read(t, l, s, storage.Query{MaxBytes: 102})
	if !res.Snapshot || !slices.Equal(offsets(res.Pubs), []uint64{2, 3, 4}) || !res.More {
		t.Fatalf("max bytes 102: snapshot %v, offsets %v, more %v", res.Snapshot, offsets(res.Pubs), res.More)
	}
	// Paging on from the last offset read goes on with the tail.
	res = read(t, l, s, storage.Query{After: storage.Position{Offset: 4}})
	if res.Snapshot || !slices.Equal(offsets(res.Pubs), []uint64{5, 6}) {
		t.Fatalf("page 2: snapshot %v, offsets %v", res.Snapshot, offsets(res.Pubs))
	}
}
