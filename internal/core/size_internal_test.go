package core

import (
	"testing"
	"unsafe"
)

// TestIdleFootprint guards the memory of an idle subscribed connection
// (bench idle row: about 2 KiB per connection in all). The allocator rounds
// a struct up to its size class, so a few bytes more can cost 32 or 64 per
// connection: the Session (all a huddle.v1 connection holds besides the
// transport's Conn, which has its own guard) must stay within the 160-byte
// class, and subscription within 80. State
// that only some connections need goes behind a pointer (connRare,
// jobQueue, pending).
func TestIdleFootprint(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 160 {
		t.Errorf("Session is %d bytes, over the 160-byte size class", n)
	}
	if n := unsafe.Sizeof(subscription{}); n > 80 {
		t.Errorf("subscription is %d bytes, over the 80-byte size class", n)
	}
}
