package wire

import (
	"bytes"
	"testing"
)

// TestBodyList: bodies survive a list, with their shape (a msgpack prefix
// picks its variant by it), and zero bodies are left out.
func TestBodyList(t *testing.T) {
	for d := Dialect(0); d < NumDialects; d++ {
		in := []Body{
			NewBroadcastBody(d, Publication{Data: []byte(`{"a":1}`), Stream: "s", Epoch: "e", Offset: 7}),
			NewPresenceBody(d, PresenceEvent{Type: PresenceJoin, ID: "u", Info: []byte(`{"n":"x"}`)}),
			NewWhisperBody(d, []byte(`{"event":"typing"}`)),
		}
		list := AppendBodyList(nil, in...)
		var out []Body
		if err := EachBody(d, list, func(b *Body) { out = append(out, *b) }); err != nil {
			t.Fatalf("%v: %v", d, err)
		}
		var want []Body
		for _, b := range in {
			if !b.IsZero() {
				want = append(want, b)
			}
		}
		if len(out) != len(want) {
			t.Fatalf("%v: %d bodies back, want %d", d, len(out), len(want))
		}
		p := NewPrefix(d, `{"channel":"$pubsub","stream_name":"s"}`)
		for i := range out {
			if !bytes.Equal(out[i].Bytes(), want[i].Bytes()) || !bytes.Equal(p.For(&out[i]), p.For(&want[i])) {
				t.Errorf("%v: body %d changed in the list", d, i)
			}
		}
	}
	if err := EachBody(JSON, []byte{9, 1, 'x'}, func(*Body) {}); err == nil {
		t.Error("a list with an unknown shape was accepted")
	}
	if err := EachBody(JSON, []byte{0, 5, 'x'}, func(*Body) {}); err == nil {
		t.Error("a list with a body cut short was accepted")
	}
}
