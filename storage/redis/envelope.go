package redis

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/huddle-rt/huddle/storage"
)

// ErrBadEnvelope is returned by DecodeEnvelope for a message that is not an
// envelope.
var ErrBadEnvelope = errors.New("storage/redis: malformed envelope")

// Envelope is the pub/sub message AppendPublish sends: where the append
// landed, and the caller's payload.
//
// Its encoding is text fields joined by ':', then the payload as is:
//
//	<offset>:<epoch>:<time>:<payload>
//
// offset is the assigned offset in decimal, epoch the stream's epoch (never
// empty, never holding ':'), time the append time in unix milliseconds in
// decimal, and payload the bytes given to AppendPublish, which may hold
// anything, ':' included.
type Envelope struct {
	Position storage.Position
	Time     int64
	Payload  []byte
}

// AppendEnvelope appends the encoding of e to dst, byte for byte what
// AppendPublish's script publishes.
func AppendEnvelope(dst []byte, e Envelope) []byte {
	dst = strconv.AppendUint(dst, e.Position.Offset, 10)
	dst = append(dst, ':')
	dst = append(dst, e.Position.Epoch...)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, e.Time, 10)
	dst = append(dst, ':')
	return append(dst, e.Payload...)
}

// DecodeEnvelope parses an envelope. The returned Payload aliases b.
func DecodeEnvelope(b []byte) (Envelope, error) {
	var e Envelope
	offset, rest, ok := bytes.Cut(b, []byte{':'})
	if !ok {
		return Envelope{}, fmt.Errorf("%w: no offset", ErrBadEnvelope)
	}
	epoch, rest, ok := bytes.Cut(rest, []byte{':'})
	if !ok || len(epoch) == 0 {
		return Envelope{}, fmt.Errorf("%w: no epoch", ErrBadEnvelope)
	}
	ms, payload, ok := bytes.Cut(rest, []byte{':'})
	if !ok {
		return Envelope{}, fmt.Errorf("%w: no time", ErrBadEnvelope)
	}
	var err error
	if e.Position.Offset, err = parseDecimal(offset); err != nil {
		return Envelope{}, fmt.Errorf("%w: offset: %w", ErrBadEnvelope, err)
	}
	t, err := parseDecimal(ms)
	if err != nil || t > 1<<63-1 {
		return Envelope{}, fmt.Errorf("%w: time %q", ErrBadEnvelope, ms)
	}
	e.Position.Epoch = string(epoch)
	e.Time = int64(t)
	e.Payload = payload
	return e, nil
}

// parseDecimal parses a canonical unsigned decimal: digits only, no sign,
// no leading zero, so each number has one encoding.
func parseDecimal(b []byte) (uint64, error) {
	if len(b) == 0 || (b[0] == '0' && len(b) > 1) || b[0] == '+' || b[0] == '-' {
		return 0, fmt.Errorf("%q is not a canonical decimal", b)
	}
	return strconv.ParseUint(string(b), 10, 64)
}
