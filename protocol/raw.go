package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// Raw is a payload value (pub data, presence state, user info) held in its
// msgpack encoding. It passes through msgpack as is and is converted to and
// from JSON for JSON clients. An empty Raw means "absent".
type Raw []byte

// RawNil is the msgpack encoding of nil.
var RawNil = Raw{0xc0}

// EncodeMsgpack writes r as is (nil when empty).
func (r Raw) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(r) == 0 {
		return enc.EncodeNil()
	}
	return msgpack.RawMessage(r).EncodeMsgpack(enc)
}

// DecodeMsgpack reads one msgpack value into r.
func (r *Raw) DecodeMsgpack(dec *msgpack.Decoder) error {
	b, err := dec.DecodeRaw()
	if err != nil {
		return err
	}
	*r = Raw(b)
	return nil
}

// MarshalJSON converts r to JSON.
func (r Raw) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return MsgpackToJSON(nil, r)
}

// UnmarshalJSON converts a JSON value to msgpack.
func (r *Raw) UnmarshalJSON(b []byte) error {
	m, err := JSONToMsgpack(nil, b)
	if err != nil {
		return err
	}
	*r = m
	return nil
}

// IsNil reports whether r is absent or msgpack nil.
func (r Raw) IsNil() bool { return len(r) == 0 || (len(r) == 1 && r[0] == 0xc0) }

// IsMap reports whether r holds a map.
func (r Raw) IsMap() bool {
	_, _, err := mapHeader(r, 0)
	return err == nil
}

// Validate checks that r is exactly one well-formed msgpack value of bounded
// depth.
func (r Raw) Validate() error {
	end, err := skipMsgpack(r, 0, 0)
	if err != nil {
		return err
	}
	if end != len(r) {
		return errors.New("trailing bytes after value")
	}
	return nil
}

// RawFromJSON converts a JSON document to Raw.
func RawFromJSON(b []byte) (Raw, error) { return JSONToMsgpack(nil, b) }

// MustRaw encodes v as msgpack and panics on failure; for tests and
// constants.
func MustRaw(v any) Raw {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// JSONToMsgpack appends the msgpack encoding of the JSON value in src to
// dst. Integers stay integers; other numbers become float64.
func JSONToMsgpack(dst, src []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return dst, err
	}
	if dec.More() {
		return dst, errors.New("trailing data after JSON value")
	}
	return appendValue(dst, v, 0)
}

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, fmt.Errorf("value nested deeper than %d", maxDepth)
	}
	switch x := v.(type) {
	case nil:
		return append(dst, 0xc0), nil
	case bool:
		if x {
			return append(dst, 0xc3), nil
		}
		return append(dst, 0xc2), nil
	case string:
		return appendMsgpackStr(dst, x), nil
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return appendInt(dst, i), nil
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return binary.BigEndian.AppendUint64(append(dst, 0xcf), u), nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return dst, err
		}
		return binary.BigEndian.AppendUint64(append(dst, 0xcb), math.Float64bits(f)), nil
	case []any:
		dst = appendArrayHeader(dst, len(x))
		var err error
		for _, e := range x {
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	case map[string]any:
		dst = appendMapHeader(dst, len(x))
		var err error
		for k, e := range x {
			dst = appendMsgpackStr(dst, k)
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
	return dst, fmt.Errorf("unexpected JSON value %T", v)
}

func appendInt(dst []byte, i int64) []byte {
	switch {
	case i >= 0 && i <= 0x7f:
		return append(dst, byte(i))
	case i < 0 && i >= -32:
		return append(dst, byte(i))
	case i >= math.MinInt8 && i <= math.MaxInt8:
		return append(dst, 0xd0, byte(i))
	case i >= math.MinInt16 && i <= math.MaxInt16:
		return append(dst, 0xd1, byte(i>>8), byte(i))
	case i >= math.MinInt32 && i <= math.MaxInt32:
		return binary.BigEndian.AppendUint32(append(dst, 0xd2), uint32(i))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(i))
}

func appendArrayHeader(dst []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(dst, 0x90|byte(n))
	case n <= 0xffff:
		return append(dst, 0xdc, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xdd), uint32(n))
}

func appendMapHeader(dst []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(dst, 0x80|byte(n))
	case n <= 0xffff:
		return append(dst, 0xde, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xdf), uint32(n))
}

// MsgpackToJSON appends the JSON form of the msgpack value in src to dst.
// Every well-formed value converts: binary becomes a base64 string, map keys
// that are not strings become their text, extensions and NaN become null.
func MsgpackToJSON(dst, src []byte) ([]byte, error) {
	dst, end, err := toJSON(dst, src, 0, 0)
	if err != nil {
		return dst, err
	}
	if end != len(src) {
		return dst, errors.New("trailing bytes after msgpack value")
	}
	return dst, nil
}

func toJSON(dst, b []byte, pos, depth int) ([]byte, int, error) {
	if depth > maxDepth {
		return dst, 0, fmt.Errorf("value nested deeper than %d", maxDepth)
	}
	if pos >= len(b) {
		return dst, 0, errShort
	}
	c := b[pos]
	switch {
	case c <= 0x7f:
		return strconv.AppendInt(dst, int64(c), 10), pos + 1, nil
	case c >= 0xe0:
		return strconv.AppendInt(dst, int64(int8(c)), 10), pos + 1, nil
	case c <= 0x8f || c == 0xde || c == 0xdf:
		n, h, err := mapHeader(b, pos)
		if err != nil {
			return dst, 0, err
		}
		pos += h
		dst = append(dst, '{')
		for i := 0; i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			if s, next, ok := readStr(b, pos); ok {
				dst = appendJSONString(dst, s)
				pos = next
			} else {
				var key []byte
				if key, pos, err = toJSON(nil, b, pos, depth+1); err != nil {
					return dst, 0, err
				}
				if len(key) > 0 && key[0] == '"' {
					dst = append(dst, key...)
				} else {
					dst = appendJSONString(dst, string(key))
				}
			}
			dst = append(dst, ':')
			if dst, pos, err = toJSON(dst, b, pos, depth+1); err != nil {
				return dst, 0, err
			}
		}
		return append(dst, '}'), pos, nil
	case c <= 0x9f || c == 0xdc || c == 0xdd:
		var n int
		var err error
		switch c {
		case 0xdc:
			n, err = uintN(b, pos+1, 2)
			pos += 3
		case 0xdd:
			n, err = uintN(b, pos+1, 4)
			pos += 5
		default:
			n = int(c & 0x0f)
			pos++
		}
		if err != nil {
			return dst, 0, err
		}
		dst = append(dst, '[')
		for i := 0; i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, pos, err = toJSON(dst, b, pos, depth+1); err != nil {
				return dst, 0, err
			}
		}
		return append(dst, ']'), pos, nil
	case c <= 0xbf || c == 0xd9 || c == 0xda || c == 0xdb:
		s, next, ok := readStr(b, pos)
		if !ok {
			return dst, 0, errShort
		}
		return appendJSONString(dst, s), next, nil
	}
	end, err := skipMsgpack(b, pos, depth)
	if err != nil {
		return dst, 0, err
	}
	v := b[pos+1 : end]
	switch c {
	case 0xc0:
		dst = append(dst, "null"...)
	case 0xc2:
		dst = append(dst, "false"...)
	case 0xc3:
		dst = append(dst, "true"...)
	case 0xc4, 0xc5, 0xc6:
		w := 1 << (c - 0xc4)
		data := v[w:]
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, data)
		dst = append(dst, '"')
	case 0xca:
		dst = appendFloat(dst, float64(math.Float32frombits(binary.BigEndian.Uint32(v))), 32)
	case 0xcb:
		dst = appendFloat(dst, math.Float64frombits(binary.BigEndian.Uint64(v)), 64)
	case 0xcc:
		dst = strconv.AppendUint(dst, uint64(v[0]), 10)
	case 0xcd:
		dst = strconv.AppendUint(dst, uint64(binary.BigEndian.Uint16(v)), 10)
	case 0xce:
		dst = strconv.AppendUint(dst, uint64(binary.BigEndian.Uint32(v)), 10)
	case 0xcf:
		dst = strconv.AppendUint(dst, binary.BigEndian.Uint64(v), 10)
	case 0xd0:
		dst = strconv.AppendInt(dst, int64(int8(v[0])), 10)
	case 0xd1:
		dst = strconv.AppendInt(dst, int64(int16(binary.BigEndian.Uint16(v))), 10)
	case 0xd2:
		dst = strconv.AppendInt(dst, int64(int32(binary.BigEndian.Uint32(v))), 10)
	case 0xd3:
		dst = strconv.AppendInt(dst, int64(binary.BigEndian.Uint64(v)), 10)
	default: // extensions
		dst = append(dst, "null"...)
	}
	return dst, end, nil
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
