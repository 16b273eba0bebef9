package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

var errShort = errors.New("truncated msgpack value")

// skipMsgpack returns the end of the msgpack value starting at b[pos],
// validating its structure and bounding its nesting, so that untrusted input
// never drives a deep recursion elsewhere.
func skipMsgpack(b []byte, pos, depth int) (int, error) {
	if depth > maxDepth {
		return 0, fmt.Errorf("value nested deeper than %d", maxDepth)
	}
	if pos >= len(b) {
		return 0, errShort
	}
	c := b[pos]
	pos++
	var n, items int
	switch {
	case c <= 0x7f || c >= 0xe0: // fixint
		return pos, nil
	case c <= 0x8f: // fixmap
		items = 2 * int(c&0x0f)
	case c <= 0x9f: // fixarray
		items = int(c & 0x0f)
	case c <= 0xbf: // fixstr
		n = int(c & 0x1f)
	default:
		switch c {
		case 0xc0, 0xc2, 0xc3:
			return pos, nil
		case 0xc1:
			return 0, errors.New("invalid msgpack code 0xc1")
		case 0xc4, 0xd9: // bin8, str8
			l, err := uintN(b, pos, 1)
			if err != nil {
				return 0, err
			}
			pos, n = pos+1, l
		case 0xc5, 0xda:
			l, err := uintN(b, pos, 2)
			if err != nil {
				return 0, err
			}
			pos, n = pos+2, l
		case 0xc6, 0xdb:
			l, err := uintN(b, pos, 4)
			if err != nil {
				return 0, err
			}
			pos, n = pos+4, l
		case 0xc7, 0xc8, 0xc9: // ext8/16/32
			w := 1 << (c - 0xc7)
			l, err := uintN(b, pos, w)
			if err != nil {
				return 0, err
			}
			pos, n = pos+w, l+1
		case 0xca, 0xce, 0xd2:
			n = 4
		case 0xcb, 0xcf, 0xd3:
			n = 8
		case 0xcc, 0xd0:
			n = 1
		case 0xcd, 0xd1:
			n = 2
		case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16, plus type byte
			n = 1<<(c-0xd4) + 1
		case 0xdc, 0xdd, 0xde, 0xdf:
			w := 2
			if c == 0xdd || c == 0xdf {
				w = 4
			}
			l, err := uintN(b, pos, w)
			if err != nil {
				return 0, err
			}
			pos, items = pos+w, l
			if c >= 0xde {
				items *= 2
			}
		}
	}
	if n > 0 {
		if n > len(b)-pos {
			return 0, errShort
		}
		return pos + n, nil
	}
	if items > len(b)-pos { // every item takes at least one byte
		return 0, errShort
	}
	var err error
	for i := 0; i < items; i++ {
		if pos, err = skipMsgpack(b, pos, depth+1); err != nil {
			return 0, err
		}
	}
	return pos, nil
}

func uintN(b []byte, pos, w int) (int, error) {
	if pos+w > len(b) {
		return 0, errShort
	}
	switch w {
	case 1:
		return int(b[pos]), nil
	case 2:
		return int(binary.BigEndian.Uint16(b[pos:])), nil
	default:
		v := binary.BigEndian.Uint32(b[pos:])
		if uint64(v) > uint64(len(b)) {
			return 0, errShort
		}
		return int(v), nil
	}
}

// mapHeader reads a map header at b[pos], returning the entry count and the
// header's length.
func mapHeader(b []byte, pos int) (n, hdr int, err error) {
	if pos >= len(b) {
		return 0, 0, errShort
	}
	switch c := b[pos]; {
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), 1, nil
	case c == 0xde:
		l, err := uintN(b, pos+1, 2)
		return l, 3, err
	case c == 0xdf:
		l, err := uintN(b, pos+1, 4)
		return l, 5, err
	}
	return 0, 0, errors.New("not a map")
}

// readStr reads a string at b[pos]; ok is false if the value is not a string.
func readStr(b []byte, pos int) (s string, next int, ok bool) {
	if pos >= len(b) {
		return "", pos, false
	}
	c := b[pos]
	var n, h int
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n, h = int(c&0x1f), 1
	case c == 0xd9:
		l, err := uintN(b, pos+1, 1)
		if err != nil {
			return "", pos, false
		}
		n, h = l, 2
	case c == 0xda:
		l, err := uintN(b, pos+1, 2)
		if err != nil {
			return "", pos, false
		}
		n, h = l, 3
	case c == 0xdb:
		l, err := uintN(b, pos+1, 4)
		if err != nil {
			return "", pos, false
		}
		n, h = l, 5
	default:
		return "", pos, false
	}
	if pos+h+n > len(b) {
		return "", pos, false
	}
	return string(b[pos+h : pos+h+n]), pos + h + n, true
}

// readUint reads a non-negative integer at b[pos].
func readUint(b []byte, pos int) (v uint64, next int, ok bool) {
	if pos >= len(b) {
		return 0, pos, false
	}
	c := b[pos]
	switch {
	case c <= 0x7f:
		return uint64(c), pos + 1, true
	case c == 0xcc || c == 0xd0:
		if pos+2 > len(b) || (c == 0xd0 && int8(b[pos+1]) < 0) {
			return 0, pos, false
		}
		return uint64(b[pos+1]), pos + 2, true
	case c == 0xcd || c == 0xd1:
		if pos+3 > len(b) {
			return 0, pos, false
		}
		u := binary.BigEndian.Uint16(b[pos+1:])
		if c == 0xd1 && int16(u) < 0 {
			return 0, pos, false
		}
		return uint64(u), pos + 3, true
	case c == 0xce || c == 0xd2:
		if pos+5 > len(b) {
			return 0, pos, false
		}
		u := binary.BigEndian.Uint32(b[pos+1:])
		if c == 0xd2 && int32(u) < 0 {
			return 0, pos, false
		}
		return uint64(u), pos + 5, true
	case c == 0xcf || c == 0xd3:
		if pos+9 > len(b) {
			return 0, pos, false
		}
		u := binary.BigEndian.Uint64(b[pos+1:])
		if c == 0xd3 && int64(u) < 0 {
			return 0, pos, false
		}
		return u, pos + 9, true
	}
	return 0, pos, false
}

func appendMsgpackStr(dst []byte, s string) []byte {
	switch n := len(s); {
	case n <= 31:
		dst = append(dst, 0xa0|byte(n))
	case n <= 0xff:
		dst = append(dst, 0xd9, byte(n))
	case n <= 0xffff:
		dst = append(dst, 0xda, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, s...)
}
