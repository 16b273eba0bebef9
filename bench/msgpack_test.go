package bench

import (
	"bytes"
	"math"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// msgpackValues covers every msgpack type and length class.
var msgpackValues = []any{
	nil, true, false, 0, 1, 127, 128, 255, 256, 65535, 65536, uint64(math.MaxUint64), -1, -32, -33, -128, -129, -40000, int64(math.MinInt64),
	float32(1.5), 2.5, "", "hi", string(bytes.Repeat([]byte("s"), 31)), string(bytes.Repeat([]byte("s"), 200)), string(bytes.Repeat([]byte("s"), 70000)),
	[]byte{}, []byte{1, 2, 3}, bytes.Repeat([]byte{7}, 300), bytes.Repeat([]byte{7}, 70000),
	[]any{}, []any{1, "a", nil}, make([]any, 20), make([]any, 70000),
	map[string]any{}, map[string]any{"a": 1, "b": []any{map[string]any{"c": "d"}}},
	&msgpack.RawMessage{0xd4, 1, 2}, &msgpack.RawMessage{0xc7, 3, 1, 'a', 'b', 'c'},
}

func TestMsgpackSkip(t *testing.T) {
	for _, v := range msgpackValues {
		var b []byte
		if rm, ok := v.(*msgpack.RawMessage); ok {
			b = *rm
		} else {
			var err error
			if b, err = msgpack.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		b = append(b, 0xc0) // a following value
		end, ok := mpSkip(b, 0)
		if !ok || end != len(b)-1 {
			t.Fatalf("%T %.20v: skip to %d %v, want %d", v, v, end, ok, len(b)-1)
		}
		for cut := 0; cut < len(b)-1 && cut < 300; cut++ {
			if _, ok := mpSkip(b[:cut], 0); ok {
				t.Fatalf("%T: a truncation to %d bytes skipped", v, cut)
			}
		}
	}
}

func TestMsgpackReaders(t *testing.T) {
	for _, n := range []int64{0, 1, 127, 128, 255, 256, 65535, 65536, 1 << 33, -1, -32, -33, -200, -70000, -(1 << 40), math.MaxInt64} {
		b, _ := msgpack.Marshal(n)
		v, next, ok := mpInt(b, 0)
		if !ok || v != n || next != len(b) {
			t.Fatalf("mpInt(%d) = %d %d %v", n, v, next, ok)
		}
	}
	for _, s := range []string{"", "t", string(bytes.Repeat([]byte("x"), 40)), string(bytes.Repeat([]byte("x"), 300)), string(bytes.Repeat([]byte("x"), 70000))} {
		for _, enc := range [][]byte{appendStr(nil, s), appendBin(nil, []byte(s))} {
			v, next, ok := mpBytes(enc, 0)
			if !ok || string(v) != s || next != len(enc) {
				t.Fatalf("mpBytes of %d bytes: %d %d %v", len(s), len(v), next, ok)
			}
			var back any
			if err := msgpack.Unmarshal(enc, &back); err != nil {
				t.Fatalf("our encoding of %d bytes is not msgpack: %v", len(s), err)
			}
		}
	}
	for _, n := range []int{0, 15, 16, 65535, 65536} {
		hdr := appendMapHeader(nil, n)
		b := append(hdr, make([]byte, 2*n)...) // n pairs of fixint 0
		if got, next, ok := mpMap(b, 0); !ok || got != n || next != len(hdr) {
			t.Fatalf("map header %d: %d %d %v", n, got, next, ok)
		}
		if _, _, ok := mpArray(b, 0); ok {
			t.Fatalf("a map header read as an array")
		}
	}
	for _, u := range []uint64{0, 127, 128, 255, 256, 65535, 65536, 1 << 32, math.MaxUint64} {
		var back uint64
		if err := msgpack.Unmarshal(appendUint(nil, u), &back); err != nil || back != u {
			t.Fatalf("appendUint(%d): %d %v", u, back, err)
		}
	}
}

// FuzzMsgpackSkip: the readers never panic or run past the input, whatever
// it holds, also when fed in two halves.
func FuzzMsgpackSkip(f *testing.F) {
	for _, v := range msgpackValues[:30] {
		if b, err := msgpack.Marshal(v); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xdd, 0x7f, 0xff, 0xff, 0xff, 0x90})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, in := range [][]byte{b, b[:len(b)/2]} {
			if end, ok := mpSkip(in, 0); ok && (end <= 0 || end > len(in)) {
				t.Fatalf("skip end %d of %d", end, len(in))
			}
			if v, next, ok := mpBytes(in, 0); ok && (next > len(in) || len(v) > len(in)) {
				t.Fatalf("bytes past the end")
			}
			_, _, _ = mpInt(in, 0)
			_, _, _ = mpMap(in, 0)
			c := &huddleConn{h: func(*Event) {}}
			_ = c.dispatchMsgpack(in, 0, &Event{})
		}
	})
}
