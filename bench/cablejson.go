package bench

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// The cable adapter reads and writes Action Cable's JSON by hand: every
// message has a handful of known fields, and encoding/json's reflection
// and allocations would make the client, not the server, set the figures.
// These helpers scan JSON in place; values come back as subslices of the
// input (strings with their escapes intact, see jsonUnescape).

// appendJSONString appends s as a quoted JSON string.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendJSONEscaped(b, s)
	return append(b, '"')
}

// appendJSONEscaped appends s escaped for the inside of a JSON string
// (quotes, backslashes and control characters; other bytes as they are).
func appendJSONEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		}
		start = i + 1
	}
	return append(b, s[start:]...)
}

// jsonSkipWS returns the index of the first non-space byte at or after i.
func jsonSkipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// jsonString reads the string whose opening quote is at b[i]: its content
// with escapes intact, whether it has any, and the index after the closing
// quote.
func jsonString(b []byte, i int) (s []byte, esc bool, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, false, i, false
	}
	for j := i + 1; ; {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return nil, false, i, false
		}
		q := j + k
		n := 0 // backslashes right before the quote: an odd number escapes it
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			s = b[i+1 : q]
			return s, bytes.IndexByte(s, '\\') >= 0, q + 1, true
		}
		j = q + 1
	}
}

// jsonSkip returns the index after the value that starts at b[i] (no
// leading space).
func jsonSkip(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		_, _, n, ok := jsonString(b, i)
		return n, ok
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				_, _, n, ok := jsonString(b, j)
				if !ok {
					return i, false
				}
				j = n - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return i, false
	default: // number, true, false, null
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		return j, j > i
	}
}

// jsonObject walks the members of one JSON object.
type jsonObject struct {
	b     []byte
	i     int
	begun bool
	bad   bool // the input was not a well-formed object
}

// newJSONObject starts walking the object at the start of b (after
// optional space); ok is false when b holds no object.
func newJSONObject(b []byte) (jsonObject, bool) {
	i := jsonSkipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return jsonObject{}, false
	}
	return jsonObject{b: b, i: i + 1}, true
}

// next returns the next member: its key (escapes intact) and its value
// (the raw bytes: a string keeps its quotes). ok is false after the last
// one, or on malformed input (then o.bad is set).
func (o *jsonObject) next() (key, val []byte, ok bool) {
	b := o.b
	i := jsonSkipWS(b, o.i)
	if i < len(b) && b[i] == '}' {
		o.i = i + 1
		return nil, nil, false
	}
	if o.begun {
		if i >= len(b) || b[i] != ',' {
			o.bad = true
			return nil, nil, false
		}
		i = jsonSkipWS(b, i+1)
	}
	o.begun = true
	key, _, i, ok = jsonString(b, i)
	if !ok {
		o.bad = true
		return nil, nil, false
	}
	i = jsonSkipWS(b, i)
	if i >= len(b) || b[i] != ':' {
		o.bad = true
		return nil, nil, false
	}
	i = jsonSkipWS(b, i+1)
	end, ok := jsonSkip(b, i)
	if !ok {
		o.bad = true
		return nil, nil, false
	}
	o.i = end
	return key, b[i:end], true
}

// jsonStringValue returns the content of a raw string value (escapes
// intact); ok is false for any other value.
func jsonStringValue(v []byte) (s []byte, esc bool, ok bool) {
	s, esc, n, ok := jsonString(v, 0)
	return s, esc, ok && n == len(v)
}

// jsonUint reads a raw non-negative integer value.
func jsonUint(v []byte) (uint64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// jsonUnescape appends the string content s (as jsonString returns it)
// with its escapes resolved.
func jsonUnescape(dst, s []byte) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(s) {
			return dst, false
		}
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s[i+1:])
			if !ok {
				return dst, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if r2, ok := hex4(s[i+3:]); ok {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							r = d
							i += 6
						}
					}
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
	return dst, true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
