package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// errInvalidJSON is returned by appendMsgpackFromJSON for input that is not
// one valid JSON value.
var errInvalidJSON = errors.New("invalid JSON")

// appendMsgpackFromJSON appends the msgpack encoding of the JSON value src.
// It makes two linear passes and no recursion: the first counts the entries
// of every array and object in the order they open, the second emits, so
// every container header is written with its final count. Integers that fit
// int64 or uint64 stay exact; every other number becomes a float64.
func appendMsgpackFromJSON(dst, src []byte) ([]byte, error) {
	if !json.Valid(src) { // also bounds nesting, at encoding/json's limit
		return dst, errInvalidJSON
	}
	var stack [32]int
	counts := countJSONEntries(src, stack[:0], nil)
	next := 0
	for i := 0; i < len(src); {
		switch c := src[i]; c {
		case ' ', '\t', '\n', '\r', ',', ':', ']', '}':
			i++
		case '{':
			dst = appendMsgpackMapHeader(dst, counts[next])
			next++
			i++
		case '[':
			dst = appendMsgpackArrayHeader(dst, counts[next])
			next++
			i++
		case '"':
			end := jsonStringEnd(src, i)
			dst = appendMsgpackJSONString(dst, src[i:end])
			i = end
		case 't':
			dst = appendMsgpackBool(dst, true)
			i += len("true")
		case 'f':
			dst = appendMsgpackBool(dst, false)
			i += len("false")
		case 'n':
			dst = append(dst, 0xc0)
			i += len("null")
		default: // a number
			end := i + 1
			for end < len(src) && isJSONNumberByte(src[end]) {
				end++
			}
			dst = appendMsgpackNumber(dst, src[i:end])
			i = end
		}
	}
	return dst, nil
}

// countJSONEntries returns, for each array and object of the valid JSON src
// in the order they open, how many elements or members it holds: one for a
// non-empty container plus one per separating comma.
func countJSONEntries(src []byte, stack, counts []int) []int {
	for i := 0; i < len(src); i++ {
		switch src[i] {
		case '"':
			i = jsonStringEnd(src, i) - 1
		case '[', '{':
			stack = append(stack, len(counts))
			n := 0
			j := i + 1
			for j < len(src) && isJSONSpace(src[j]) {
				j++
			}
			if src[j] != ']' && src[j] != '}' {
				n = 1
			}
			counts = append(counts, n)
		case ',':
			counts[stack[len(stack)-1]]++
		case ']', '}':
			stack = stack[:len(stack)-1]
		}
	}
	return counts
}

// jsonStringEnd returns the index just past the string literal that starts
// at src[i] (a '"') in valid JSON.
func jsonStringEnd(src []byte, i int) int {
	for i++; ; i++ {
		switch src[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isJSONNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// appendMsgpackJSONString appends the valid JSON string literal lit
// (quotes included) as a msgpack str.
func appendMsgpackJSONString(dst, lit []byte) []byte {
	body := lit[1 : len(lit)-1]
	for _, c := range body {
		if c == '\\' {
			var s string
			_ = json.Unmarshal(lit, &s) // cannot fail: lit is valid
			return appendMsgpackString(dst, s)
		}
	}
	if !utf8.Valid(body) {
		return appendMsgpackString(dst, string(body))
	}
	dst = appendMsgpackStrHeader(dst, len(body))
	return append(dst, body...)
}

func appendMsgpackNumber(dst, num []byte) []byte {
	s := string(num) // does not escape: the compiler avoids the copy
	integer := true
	for _, c := range num {
		if c == '.' || c == 'e' || c == 'E' {
			integer = false
			break
		}
	}
	if integer {
		if num[0] == '-' {
			if v, err := strconv.ParseInt(s, 10, 64); err == nil {
				return appendMsgpackInt(dst, v)
			}
		} else if v, err := strconv.ParseUint(s, 10, 64); err == nil {
			return appendMsgpackUint(dst, v)
		}
	}
	f, _ := strconv.ParseFloat(s, 64) // out of range gives ±Inf, as in JavaScript
	return appendMsgpackFloat(dst, f)
}

// Errors of appendJSONFromMsgpack, for client frames.
var (
	errTruncated      = errors.New("truncated msgpack")
	errTooDeep        = errors.New("msgpack nested too deep")
	errNonStringKey   = errors.New("msgpack map key is not a string")
	errUnsupportedExt = errors.New("msgpack extension type has no JSON form")
	errBinary         = errors.New("msgpack binary has no JSON form")
	errBadByte        = errors.New("msgpack uses the reserved byte 0xc1")
	errNonFinite      = errors.New("msgpack float is NaN or infinite")
)

// maxMsgpackDepth bounds the nesting of a client's msgpack value.
const maxMsgpackDepth = 64

// appendJSONFromMsgpack converts the msgpack value at the start of src to
// JSON, returning the output and the number of input bytes used. Map keys
// must be strings; bin values and extension types have no JSON form, except
// the timestamp extension (-1), which @msgpack/msgpack uses for Dates and
// which becomes the string Date.prototype.toJSON would give.
func appendJSONFromMsgpack(dst, src []byte, depth int) ([]byte, int, error) {
	if depth > maxMsgpackDepth {
		return dst, 0, errTooDeep
	}
	if len(src) == 0 {
		return dst, 0, errTruncated
	}
	c := src[0]
	switch {
	case c <= 0x7f:
		return strconv.AppendUint(dst, uint64(c), 10), 1, nil
	case c >= 0xe0:
		return strconv.AppendInt(dst, int64(int8(c)), 10), 1, nil
	case c&0xe0 == 0xa0:
		return appendJSONStr(dst, src, 1, int(c&0x1f))
	case c&0xf0 == 0x90:
		return appendJSONArray(dst, src, 1, int(c&0x0f), depth)
	case c&0xf0 == 0x80:
		return appendJSONMap(dst, src, 1, int(c&0x0f), depth)
	}
	switch c {
	case 0xc0:
		return append(dst, "null"...), 1, nil
	case 0xc2:
		return append(dst, "false"...), 1, nil
	case 0xc3:
		return append(dst, "true"...), 1, nil
	case 0xc1:
		return dst, 0, errBadByte
	case 0xc4, 0xc5, 0xc6:
		return dst, 0, errBinary
	}
	// Everything left has a fixed-size argument after the type byte.
	size := msgpackArgSize(c)
	if len(src) < 1+size {
		return dst, 0, errTruncated
	}
	arg := readBigEndian(src[1 : 1+size])
	switch c {
	case 0xca:
		return appendJSONFiniteFloat(dst, float64(math.Float32frombits(uint32(arg))), 32, 1+size)
	case 0xcb:
		return appendJSONFiniteFloat(dst, math.Float64frombits(arg), 64, 1+size)
	case 0xcc, 0xcd, 0xce, 0xcf:
		return strconv.AppendUint(dst, arg, 10), 1 + size, nil
	case 0xd0:
		return strconv.AppendInt(dst, int64(int8(arg)), 10), 1 + size, nil
	case 0xd1:
		return strconv.AppendInt(dst, int64(int16(arg)), 10), 1 + size, nil
	case 0xd2:
		return strconv.AppendInt(dst, int64(int32(arg)), 10), 1 + size, nil
	case 0xd3:
		return strconv.AppendInt(dst, int64(arg), 10), 1 + size, nil
	case 0xd9, 0xda, 0xdb:
		return appendJSONStr(dst, src, 1+size, int(arg))
	case 0xdc, 0xdd:
		return appendJSONArray(dst, src, 1+size, int(arg), depth)
	case 0xde, 0xdf:
		return appendJSONMap(dst, src, 1+size, int(arg), depth)
	}
	// Extensions: fixext 1..16 (0xd4..0xd8) and ext 8/16/32 (0xc7..0xc9).
	n, head := 0, 1+size
	if c >= 0xd4 {
		n = 1 << (c - 0xd4)
	} else {
		n = int(arg)
	}
	if len(src) < head+1+n || n < 0 {
		return dst, 0, errTruncated
	}
	if int8(src[head]) != -1 {
		return dst, 0, errUnsupportedExt
	}
	t, ok := decodeMsgpackTimestamp(src[head+1 : head+1+n])
	if !ok {
		return dst, 0, errUnsupportedExt
	}
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	return append(dst, '"'), head + 1 + n, nil
}

// msgpackArgSize returns the size of the fixed argument after type byte c
// (for ext types: of the length, the ext type byte is not counted).
func msgpackArgSize(c byte) int {
	switch c {
	case 0xcc, 0xd0, 0xd9, 0xc7:
		return 1
	case 0xcd, 0xd1, 0xda, 0xdc, 0xde, 0xc8:
		return 2
	case 0xca, 0xce, 0xd2, 0xdb, 0xdd, 0xdf, 0xc9:
		return 4
	case 0xcb, 0xcf, 0xd3:
		return 8
	}
	return 0 // fixext
}

func readBigEndian(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func appendJSONFiniteFloat(dst []byte, f float64, bits, used int) ([]byte, int, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, 0, errNonFinite
	}
	return appendJSONFloat(dst, f, bits), used, nil
}

func appendJSONStr(dst, src []byte, head, n int) ([]byte, int, error) {
	if n < 0 || len(src)-head < n {
		return dst, 0, errTruncated
	}
	return appendJSONString(dst, string(src[head:head+n])), head + n, nil
}

func appendJSONArray(dst, src []byte, pos, n, depth int) ([]byte, int, error) {
	if n < 0 || len(src)-pos < n { // every element takes at least a byte
		return dst, 0, errTruncated
	}
	dst = append(dst, '[')
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		var used int
		var err error
		if dst, used, err = appendJSONFromMsgpack(dst, src[pos:], depth+1); err != nil {
			return dst, 0, err
		}
		pos += used
	}
	return append(dst, ']'), pos, nil
}

func appendJSONMap(dst, src []byte, pos, n, depth int) ([]byte, int, error) {
	if n < 0 || (len(src)-pos)/2 < n {
		return dst, 0, errTruncated
	}
	dst = append(dst, '{')
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		if pos >= len(src) {
			return dst, 0, errTruncated
		}
		if c := src[pos]; c&0xe0 != 0xa0 && (c < 0xd9 || c > 0xdb) {
			return dst, 0, errNonStringKey
		}
		var used int
		var err error
		if dst, used, err = appendJSONFromMsgpack(dst, src[pos:], depth+1); err != nil {
			return dst, 0, err
		}
		pos += used
		dst = append(dst, ':')
		if dst, used, err = appendJSONFromMsgpack(dst, src[pos:], depth+1); err != nil {
			return dst, 0, err
		}
		pos += used
	}
	return append(dst, '}'), pos, nil
}

// decodeMsgpackTimestamp decodes the three layouts of the msgpack timestamp
// extension.
func decodeMsgpackTimestamp(b []byte) (time.Time, bool) {
	switch len(b) {
	case 4:
		return time.Unix(int64(binary.BigEndian.Uint32(b)), 0), true
	case 8:
		v := binary.BigEndian.Uint64(b)
		nsec := int64(v >> 34)
		if nsec > 999_999_999 {
			return time.Time{}, false
		}
		return time.Unix(int64(v&(1<<34-1)), nsec), true
	case 12:
		nsec := int64(binary.BigEndian.Uint32(b))
		if nsec > 999_999_999 {
			return time.Time{}, false
		}
		return time.Unix(int64(binary.BigEndian.Uint64(b[4:])), nsec), true
	}
	return time.Time{}, false
}
