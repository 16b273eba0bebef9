package wire

import (
	"encoding/binary"
	"errors"
)

// A body list carries several bodies of one dialect in one byte slice, so
// that one shared frame (a presence diff of several events) can stand for
// several messages: each entry is the body's shape, its length as a uvarint
// and its bytes.

var errBadList = errors.New("wire: malformed body list")

// AppendBodyList appends the non-zero bodies to a body list.
func AppendBodyList(dst []byte, bodies ...Body) []byte {
	for i := range bodies {
		b := &bodies[i]
		if b.IsZero() {
			continue
		}
		dst = append(dst, b.shape)
		dst = binary.AppendUvarint(dst, uint64(len(b.b)))
		dst = append(dst, b.b...)
	}
	return dst
}

// EachBody calls f with every body of a list made by AppendBodyList for
// dialect d. The body's bytes alias list.
func EachBody(d Dialect, list []byte, f func(b *Body)) error {
	for len(list) > 0 {
		shape := list[0]
		n, k := binary.Uvarint(list[1:])
		if shape >= numShapes || k <= 0 || n > uint64(len(list)-1-k) {
			return errBadList
		}
		start := 1 + k
		b := Body{d: d, shape: shape, b: list[start : start+int(n)]}
		f(&b)
		list = list[start+int(n):]
	}
	return nil
}
