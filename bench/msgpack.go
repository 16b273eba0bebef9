package bench

import "encoding/binary"

// A minimal msgpack writer and reader for the hot paths of the Huddle
// adapter: encoding a pub or whisper and finding "t", "s" and "data" in a
// received message must not cost more client CPU than the server spends,
// or the client core becomes what a run measures. Readers return ok=false
// on anything truncated or malformed and never panic.

func appendMapHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= 0xffff:
		return append(b, 0xde, byte(n>>8), byte(n))
	default:
		return append(b, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func appendStr(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= 0xff:
		b = append(b, 0xd9, byte(n))
	case n <= 0xffff:
		b = append(b, 0xda, byte(n>>8), byte(n))
	default:
		b = append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, s...)
}

func appendBinHeader(b []byte, n int) []byte {
	switch {
	case n <= 0xff:
		return append(b, 0xc4, byte(n))
	case n <= 0xffff:
		return append(b, 0xc5, byte(n>>8), byte(n))
	default:
		return append(b, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func appendBin(b, v []byte) []byte { return append(appendBinHeader(b, len(v)), v...) }

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(b, byte(v))
	case v <= 0xff:
		return append(b, 0xcc, byte(v))
	case v <= 0xffff:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v <= 0xffffffff:
		return append(b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
	}
}

// mpLen reads a big-endian length of w bytes at b[pos].
func mpLen(b []byte, pos, w int) (int, bool) {
	if pos+w > len(b) {
		return 0, false
	}
	switch w {
	case 1:
		return int(b[pos]), true
	case 2:
		return int(binary.BigEndian.Uint16(b[pos:])), true
	default:
		n := binary.BigEndian.Uint32(b[pos:])
		if uint64(n) > uint64(len(b)) {
			return 0, false
		}
		return int(n), true
	}
}

// mpContainer reads a map or array header at b[pos]: the number of entries
// (pairs for a map) and the position after the header.
func mpContainer(b []byte, pos int, isMap bool) (n, next int, ok bool) {
	if pos >= len(b) {
		return 0, 0, false
	}
	c := b[pos]
	fix, w16, w32 := byte(0x90), byte(0xdc), byte(0xdd)
	if isMap {
		fix, w16, w32 = 0x80, 0xde, 0xdf
	}
	switch {
	case c&0xf0 == fix:
		return int(c & 0x0f), pos + 1, true
	case c == w16:
		n, ok = mpLen(b, pos+1, 2)
		return n, pos + 3, ok
	case c == w32:
		n, ok = mpLen(b, pos+1, 4)
		return n, pos + 5, ok
	}
	return 0, 0, false
}

func mpMap(b []byte, pos int) (n, next int, ok bool)   { return mpContainer(b, pos, true) }
func mpArray(b []byte, pos int) (n, next int, ok bool) { return mpContainer(b, pos, false) }

// mpBytes reads a str or bin at b[pos] and returns its content (a subslice
// of b).
func mpBytes(b []byte, pos int) (v []byte, next int, ok bool) {
	if pos >= len(b) {
		return nil, 0, false
	}
	c := b[pos]
	var n, hdr int
	switch {
	case c&0xe0 == 0xa0:
		n, hdr, ok = int(c&0x1f), 1, true
	case c == 0xd9 || c == 0xc4:
		n, ok = mpLen(b, pos+1, 1)
		hdr = 2
	case c == 0xda || c == 0xc5:
		n, ok = mpLen(b, pos+1, 2)
		hdr = 3
	case c == 0xdb || c == 0xc6:
		n, ok = mpLen(b, pos+1, 4)
		hdr = 5
	}
	if !ok || pos+hdr+n > len(b) {
		return nil, 0, false
	}
	return b[pos+hdr : pos+hdr+n], pos + hdr + n, true
}

// mpInt reads an integer of any msgpack width at b[pos].
func mpInt(b []byte, pos int) (v int64, next int, ok bool) {
	if pos >= len(b) {
		return 0, 0, false
	}
	c := b[pos]
	switch {
	case c <= 0x7f:
		return int64(c), pos + 1, true
	case c >= 0xe0:
		return int64(int8(c)), pos + 1, true
	}
	w := 0
	switch c {
	case 0xcc, 0xd0:
		w = 1
	case 0xcd, 0xd1:
		w = 2
	case 0xce, 0xd2:
		w = 4
	case 0xcf, 0xd3:
		w = 8
	default:
		return 0, 0, false
	}
	if pos+1+w > len(b) {
		return 0, 0, false
	}
	p := b[pos+1:]
	signed := c >= 0xd0
	switch w {
	case 1:
		if signed {
			v = int64(int8(p[0]))
		} else {
			v = int64(p[0])
		}
	case 2:
		u := binary.BigEndian.Uint16(p)
		if signed {
			v = int64(int16(u))
		} else {
			v = int64(u)
		}
	case 4:
		u := binary.BigEndian.Uint32(p)
		if signed {
			v = int64(int32(u))
		} else {
			v = int64(u)
		}
	case 8:
		v = int64(binary.BigEndian.Uint64(p))
	}
	return v, pos + 1 + w, true
}

// mpSkip returns the position after the value at b[pos]. Nesting is bounded
// by the frame size, and each level consumes at least one byte.
func mpSkip(b []byte, pos int) (int, bool) {
	return mpSkipDepth(b, pos, 0)
}

func mpSkipDepth(b []byte, pos, depth int) (int, bool) {
	if pos >= len(b) || depth > 64 {
		return 0, false
	}
	c := b[pos]
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return pos + 1, true
	case c&0xf0 == 0x80, c == 0xde, c == 0xdf:
		n, next, ok := mpMap(b, pos)
		if !ok {
			return 0, false
		}
		return mpSkipN(b, next, 2*n, depth)
	case c&0xf0 == 0x90, c == 0xdc, c == 0xdd:
		n, next, ok := mpArray(b, pos)
		if !ok {
			return 0, false
		}
		return mpSkipN(b, next, n, depth)
	case c&0xe0 == 0xa0, c == 0xd9, c == 0xda, c == 0xdb, c == 0xc4, c == 0xc5, c == 0xc6:
		_, next, ok := mpBytes(b, pos)
		return next, ok
	}
	var n int
	switch c {
	case 0xcc, 0xd0:
		n = 1
	case 0xcd, 0xd1:
		n = 2
	case 0xca, 0xce, 0xd2:
		n = 4
	case 0xcb, 0xcf, 0xd3:
		n = 8
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext: type byte + 1..16
		n = 1 + 1<<(c-0xd4)
	case 0xc7, 0xc8, 0xc9: // ext 8/16/32: length, type byte, data
		w := 1 << (c - 0xc7)
		l, ok := mpLen(b, pos+1, w)
		if !ok {
			return 0, false
		}
		n = w + 1 + l
	default:
		return 0, false
	}
	if pos+1+n > len(b) {
		return 0, false
	}
	return pos + 1 + n, true
}

func mpSkipN(b []byte, pos, n, depth int) (int, bool) {
	if n > len(b)-pos { // every value is at least one byte
		return 0, false
	}
	for ; n > 0; n-- {
		var ok bool
		if pos, ok = mpSkipDepth(b, pos, depth+1); !ok {
			return 0, false
		}
	}
	return pos, true
}
