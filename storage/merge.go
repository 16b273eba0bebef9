package storage

import (
	"errors"
	"fmt"
)

// ErrGap means a recovery cannot deliver in order: an offset is missing
// between the caller's position, the history read, and the live messages
// buffered meanwhile. The subscriber must be told to resubscribe without
// recovery (4010) rather than receive publications out of order.
var ErrGap = errors.New("storage: gap in offsets")

// Merge joins history read for a recovering subscriber with the live
// publications buffered while that read ran.
//
// after is the subscriber's last offset; history must hold the publications
// after it in ascending order, starting at after+1 with no hole. live holds
// the offsets of the buffered live publications in arrival order. The live
// publications already covered by history (offset <= the last delivered)
// are duplicates; start is the index of the first live publication to
// deliver after history. Every live publication from start on must continue
// the sequence without a hole, so the caller can send history, then
// live[start:], unchanged. Otherwise Merge returns ErrGap.
//
// Merge does not check that history was Complete; the caller checks
// Result.Complete before calling it.
func Merge(after uint64, history []Publication, live []uint64) (start int, err error) {
	last := after
	for i := range history {
		if history[i].Offset != last+1 {
			return 0, fmt.Errorf("%w: history has offset %d after %d", ErrGap, history[i].Offset, last)
		}
		last++
	}
	for start < len(live) && live[start] <= last {
		start++
	}
	for _, off := range live[start:] {
		if off != last+1 {
			return 0, fmt.Errorf("%w: live offset %d after %d", ErrGap, off, last)
		}
		last++
	}
	return start, nil
}
