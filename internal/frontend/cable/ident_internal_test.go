package cable

import (
	"testing"

	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
)

// TestIdentShared: subscriptions with one identifier share its state, and
// the last one to go forgets it, so the table holds only identifiers in use.
func TestIdentShared(t *testing.T) {
	f := &Frontend{wrappers: make(map[wrapperKey]*ident)}
	a := f.ident(wire.ExtJSON, evNone, `{"channel":"$pubsub","stream_name":"s"}`)
	b := f.ident(wire.ExtJSON, evNone, `{"channel":"$pubsub","stream_name":"s"}`)
	other := f.ident(wire.JSON, evNone, `{"channel":"$pubsub","stream_name":"s"}`)
	if a != b || a == other {
		t.Fatal("one identifier in one dialect must share one ident, and only that")
	}
	f.release(a)
	if len(f.wrappers) != 2 {
		t.Fatalf("%d idents after one of two holders left, want 2", len(f.wrappers))
	}
	f.release(b)
	f.release(other)
	if len(f.wrappers) != 0 {
		t.Fatalf("%d idents left after every holder left, want 0", len(f.wrappers))
	}
}
