package server

import (
	"testing"
	"unsafe"
)

// TestIdleFootprint guards the memory of an idle subscribed connection
// (bench idle row: about 2 KiB per connection in all). The allocator rounds
// a struct up to its size class, so a few bytes more can cost 32 or 64 per
// connection: the session (conn) must stay within the 144-byte class (the
// transport's Conn has its own guard), and subscription within 80. State
// that only some connections need goes behind a pointer (connRare,
// jobQueue, pending).
func TestIdleFootprint(t *testing.T) {
	if n := unsafe.Sizeof(conn{}); n > 144 {
		t.Errorf("conn is %d bytes, over the 144-byte size class", n)
	}
	if n := unsafe.Sizeof(subscription{}); n > 80 {
		t.Errorf("subscription is %d bytes, over the 80-byte size class", n)
	}
}
