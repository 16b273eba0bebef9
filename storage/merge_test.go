package storage_test

import (
	"errors"
	"testing"

	"github.com/huddle-rt/huddle/storage"
)

// hist returns publications with the given offsets, in that order.
func hist(offsets ...uint64) []storage.Publication {
	pubs := make([]storage.Publication, len(offsets))
	for i, o := range offsets {
		pubs[i] = storage.Publication{Offset: o}
	}
	return pubs
}

// mergeCases drive both TestMerge and BenchmarkMerge.
var mergeCases = []struct {
	name    string
	after   uint64
	history []storage.Publication
	live    []uint64
	start   int
	err     error
}{
	{name: "empty", after: 5},
	{name: "empty history", after: 5, live: []uint64{6, 7}, start: 0},
	{name: "empty live", after: 5, history: hist(6, 7, 8)},
	{name: "live continues history", after: 5, history: hist(6, 7), live: []uint64{8, 9}, start: 0},
	{name: "duplicates", after: 5, history: hist(6, 7, 8), live: []uint64{6, 7, 8}, start: 3},
	{name: "overlap", after: 5, history: hist(6, 7, 8), live: []uint64{7, 8, 9, 10}, start: 2},
	{name: "live older than after", after: 5, live: []uint64{4, 5, 6}, start: 2},
	{name: "from the start of the stream", after: 0, history: hist(1, 2), live: []uint64{2, 3}, start: 1},
	{name: "gap in history", after: 5, history: hist(6, 8), err: storage.ErrGap},
	{name: "history starts late", after: 5, history: hist(7, 8), err: storage.ErrGap},
	{name: "history starts early", after: 5, history: hist(5, 6), err: storage.ErrGap},
	{name: "history out of order", after: 5, history: hist(7, 6), err: storage.ErrGap},
	{name: "gap between history and live", after: 5, history: hist(6, 7), live: []uint64{9, 10}, err: storage.ErrGap},
	{name: "gap after empty history", after: 5, live: []uint64{7}, err: storage.ErrGap},
	{name: "gap within live", after: 5, history: hist(6), live: []uint64{7, 9}, err: storage.ErrGap},
	{name: "live out of order", after: 5, history: hist(6), live: []uint64{8, 7}, err: storage.ErrGap},
	{name: "duplicate after new live", after: 5, history: hist(6, 7), live: []uint64{8, 7}, err: storage.ErrGap},
	{name: "repeated live", after: 5, history: hist(6), live: []uint64{7, 7}, err: storage.ErrGap},
}

func TestMerge(t *testing.T) {
	for _, tc := range mergeCases {
		t.Run(tc.name, func(t *testing.T) {
			start, err := storage.Merge(tc.after, tc.history, tc.live)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Merge() error = %v, want %v", err, tc.err)
			}
			if err == nil && start != tc.start {
				t.Errorf("Merge() start = %d, want %d", start, tc.start)
			}
		})
	}
}

func BenchmarkMerge(b *testing.B) {
	for _, tc := range mergeCases {
		if tc.err != nil {
			continue // the error path allocates its message; not a hot path
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				storage.Merge(tc.after, tc.history, tc.live)
			}
		})
	}
}
