package bench

import (
	"encoding/binary"
	"time"

	"github.com/huddle-rt/huddle/protocol"
)

// StampSize is the size of a stamp without padding: sequence number, send
// time and one scenario-defined word, 8 bytes each, big-endian.
const StampSize = 24

// AppendStamp appends a stamp of size bytes (at least StampSize): seq, sent
// (unix nanoseconds), aux, then zero padding. Scenarios put a stamp in every
// message they measure; latency is the receipt time minus sent. The bytes
// are protocol-neutral: an Adapter wraps them in its own message format.
func AppendStamp(dst []byte, seq uint64, sent, aux int64, size int) []byte {
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(sent))
	dst = binary.BigEndian.AppendUint64(dst, uint64(aux))
	for n := StampSize; n < size; n++ {
		dst = append(dst, 0)
	}
	return dst
}

// ParseStamp reads what AppendStamp wrote. A 16-byte stamp (no aux word, as
// Payload used to write) parses with aux 0.
func ParseStamp(b []byte) (seq uint64, sent, aux int64, ok bool) {
	if len(b) < 16 {
		return 0, 0, 0, false
	}
	seq = binary.BigEndian.Uint64(b)
	sent = int64(binary.BigEndian.Uint64(b[8:]))
	if len(b) >= StampSize {
		aux = int64(binary.BigEndian.Uint64(b[16:]))
	}
	return seq, sent, aux, true
}

// Payload is a publication body for Huddle's msgpack codec that carries its
// sequence number and send time: a msgpack bin holding a stamp padded to
// size bytes.
func Payload(seq uint64, sent time.Time, size int) protocol.Raw {
	n := max(size, StampSize)
	b := appendBinHeader(make([]byte, 0, n+5), n)
	return AppendStamp(b, seq, sent.UnixNano(), 0, n)
}

// ParsePayload reads what Payload wrote.
func ParsePayload(r protocol.Raw) (seq uint64, sent int64, ok bool) {
	body, _, ok := mpBytes(r, 0)
	if !ok {
		return 0, 0, false
	}
	seq, sent, _, ok = ParseStamp(body)
	return seq, sent, ok
}
