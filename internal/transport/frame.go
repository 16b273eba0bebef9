package transport

import (
	"encoding/binary"
	"errors"

	"github.com/gobwas/ws"
)

// WebSocket opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

type frameHeader struct {
	fin    bool
	op     byte
	masked bool
	mask   [4]byte
	length int64
}

var (
	errReservedBits = errors.New("reserved bits set (no extension was negotiated)")
	errUnmasked     = errors.New("client frame is not masked")
	errBadControl   = errors.New("control frame fragmented or over 125 bytes")
	errBadOpcode    = errors.New("unknown opcode")
	errBadLength    = errors.New("frame length not minimally encoded or over 2^63")
)

// parseHeader parses the frame header at the start of b. n is the header's
// length, 0 when b does not hold a whole header yet.
func parseHeader(b []byte) (h frameHeader, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	h.fin = b[0]&0x80 != 0
	if b[0]&0x70 != 0 {
		return h, 0, errReservedBits
	}
	h.op = b[0] & 0x0f
	h.masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
		if h.length < 126 {
			return h, 0, errBadLength
		}
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		u := binary.BigEndian.Uint64(b[2:])
		if u>>63 != 0 || u <= 0xffff {
			return h, 0, errBadLength
		}
		h.length = int64(u)
		n = 10
	default:
		h.length = int64(l)
	}
	if h.masked {
		if len(b) < n+4 {
			return h, 0, nil
		}
		copy(h.mask[:], b[n:n+4])
		n += 4
	}
	switch h.op {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if !h.fin || h.length > 125 {
			return h, 0, errBadControl
		}
	default:
		return h, 0, errBadOpcode
	}
	if !h.masked {
		return h, 0, errUnmasked
	}
	return h, n, nil
}

// appendFrameHeader appends an unmasked server frame header.
func appendFrameHeader(dst []byte, op byte, length int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case length < 126:
		return append(dst, byte(length))
	case length <= 0xffff:
		return append(dst, 126, byte(length>>8), byte(length))
	}
	return binary.BigEndian.AppendUint64(append(dst, 127), uint64(length))
}

// closeBody is the payload of a close frame: the code and a reason cut to
// fit a control frame.
func closeBody(code uint16, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	b := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(b, code)
	return append(b, reason...)
}

// unmask decodes a client payload in place.
func unmask(p []byte, mask [4]byte) { ws.Cipher(p, mask, 0) }
