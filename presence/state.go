package presence

import (
	"errors"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/huddle-rt/huddle/protocol"
)

// ErrNotMap is returned when a state or patch is not a map.
var ErrNotMap = errors.New("presence: state must be a map")

func decodeMap(r protocol.Raw) (map[string]msgpack.RawMessage, error) {
	if r.IsNil() {
		return map[string]msgpack.RawMessage{}, nil
	}
	if !r.IsMap() {
		return nil, ErrNotMap
	}
	var m map[string]msgpack.RawMessage
	if err := msgpack.Unmarshal(r, &m); err != nil {
		return nil, ErrNotMap
	}
	if m == nil {
		m = map[string]msgpack.RawMessage{}
	}
	for k, v := range m {
		if len(v) == 0 { // the decoder gives nil for a msgpack nil
			m[k] = msgpack.RawMessage{0xc0}
		}
	}
	return m, nil
}

func encodeMap(m map[string]msgpack.RawMessage) (protocol.Raw, error) {
	b, err := msgpack.Marshal(m)
	return protocol.Raw(b), err
}

func isNil(v msgpack.RawMessage) bool { return len(v) == 0 || (len(v) == 1 && v[0] == 0xc0) }

// ApplyPatch merges patch into state shallowly: each key of patch replaces
// the key in state, and a nil value deletes it.
func ApplyPatch(state, patch protocol.Raw) (protocol.Raw, error) {
	s, err := decodeMap(state)
	if err != nil {
		return nil, err
	}
	p, err := decodeMap(patch)
	if err != nil {
		return nil, err
	}
	for k, v := range p {
		if isNil(v) {
			delete(s, k)
		} else {
			s[k] = v
		}
	}
	return encodeMap(s)
}

// MergePatches combines two patches that fall in one tick: later keys win
// and nil (delete) is kept, so applying the result equals applying both.
func MergePatches(earlier, later protocol.Raw) (protocol.Raw, error) {
	e, err := decodeMap(earlier)
	if err != nil {
		return nil, err
	}
	l, err := decodeMap(later)
	if err != nil {
		return nil, err
	}
	for k, v := range l {
		e[k] = v
	}
	return encodeMap(e)
}
