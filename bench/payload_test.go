package bench

import (
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestStampRoundTrip(t *testing.T) {
	for _, size := range []int{0, 16, StampSize, 100, 5000} {
		b := AppendStamp([]byte("x"), 42, 1_700_000_000_123_456_789, -7, size)[1:]
		if want := max(size, StampSize); len(b) != want {
			t.Fatalf("size %d: %d bytes, want %d", size, len(b), want)
		}
		seq, sent, aux, ok := ParseStamp(b)
		if !ok || seq != 42 || sent != 1_700_000_000_123_456_789 || aux != -7 {
			t.Fatalf("size %d: got %d %d %d %v", size, seq, sent, aux, ok)
		}
	}
	if _, _, _, ok := ParseStamp(make([]byte, 15)); ok {
		t.Fatal("15 bytes parsed as a stamp")
	}
	// A 16-byte stamp (sequence and time only) parses with aux 0.
	b := AppendStamp(nil, 1, 2, 3, 0)[:16]
	if seq, sent, aux, ok := ParseStamp(b); !ok || seq != 1 || sent != 2 || aux != 0 {
		t.Fatalf("16-byte stamp: %d %d %d %v", seq, sent, aux, ok)
	}
}

// TestPayloadIsMsgpackBin: Payload's bytes are a msgpack bin of the padded
// stamp in every length class (bin8, bin16, bin32), and ParsePayload reads
// the sequence and nanosecond time back.
func TestPayloadIsMsgpackBin(t *testing.T) {
	sent := time.Unix(1_700_000_000, 987_654_321)
	for _, size := range []int{0, 100, 255, 256, 70000} {
		p := Payload(9, sent, size)
		var body []byte
		if err := msgpack.Unmarshal(p, &body); err != nil {
			t.Fatalf("size %d: not msgpack: %v", size, err)
		}
		if want := max(size, StampSize); len(body) != want {
			t.Fatalf("size %d: body %d bytes, want %d", size, len(body), want)
		}
		seq, ns, ok := ParsePayload(p)
		if !ok || seq != 9 || ns != sent.UnixNano() {
			t.Fatalf("size %d: ParsePayload = %d %d %v", size, seq, ns, ok)
		}
	}
	for _, bad := range [][]byte{nil, {0xc4}, {0xc4, 30, 1, 2}, {0xa3, 'a', 'b', 'c'}} {
		if _, _, ok := ParsePayload(bad); ok {
			t.Fatalf("parsed %x", bad)
		}
	}
}
