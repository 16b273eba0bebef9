package wire

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestMsgpackFromJSON(t *testing.T) {
	tests := []struct {
		in   string
		want any // as vmihailenco/msgpack decodes it
	}{
		{`null`, nil},
		{`true`, true},
		{`0`, int8(0)},
		{`127`, int8(127)},
		{`128`, uint8(128)},
		{`-33`, int8(-33)},
		{`9007199254740993`, uint64(9007199254740993)}, // exact, unlike float64
		{`18446744073709551615`, uint64(math.MaxUint64)},
		{`-9223372036854775808`, int64(math.MinInt64)},
		{`18446744073709551616`, float64(18446744073709551616)},
		{`1.5`, 1.5},
		{`-0.25e2`, -25.0},
		{`1E400`, math.Inf(1)},
		{`"plain"`, "plain"},
		{`"esc\"aped\n\u00e9\ud83d\ude00"`, "esc\"aped\né😀"},
		{"\"bad\xffutf8\"", "bad\ufffdutf8"},
		{` [ ] `, []any{}},
		{`{}`, map[string]any{}},
		{`[1,[2,[3,{}]],"x",{"a":[]}]`, []any{int8(1), []any{int8(2), []any{int8(3), map[string]any{}}}, "x", map[string]any{"a": []any{}}}},
		{`{"a":{"b":{"c":[true,false,null]}},"d":"e"}`, map[string]any{"a": map[string]any{"b": map[string]any{"c": []any{true, false, nil}}}, "d": "e"}},
		{`{"k,\"]}":"v"}`, map[string]any{`k,"]}`: "v"}},
	}
	for _, tt := range tests {
		b, err := appendMsgpackFromJSON(nil, []byte(tt.in))
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		var got any
		if err := msgpack.Unmarshal(b, &got); err != nil {
			t.Errorf("%s: msgpack % x: %v", tt.in, b, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %#v, want %#v", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{``, `{`, `[1,]`, `1 2`, `{"a"}`} {
		if _, err := appendMsgpackFromJSON(nil, []byte(bad)); err == nil {
			t.Errorf("%q converted", bad)
		}
	}
}

func TestMsgpackFromJSONContainerSizes(t *testing.T) {
	for _, n := range []int{15, 16, 65535, 65536} {
		arr := make([]int, n)
		obj := make(map[string]int, n)
		for i := range n {
			obj[string(rune('a'+i%26))+string(rune(0x100+i))] = i
		}
		for _, v := range []any{arr, obj} {
			js, _ := json.Marshal(v)
			b, err := appendMsgpackFromJSON(nil, js)
			if err != nil {
				t.Fatal(err)
			}
			var got any
			if err := msgpack.Unmarshal(b, &got); err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			gotJSON, _ := json.Marshal(got)
			var a, w any
			json.Unmarshal(gotJSON, &a)
			json.Unmarshal(js, &w)
			if !reflect.DeepEqual(a, w) {
				t.Fatalf("n=%d: round trip differs", n)
			}
		}
	}
}

func TestJSONFromMsgpack(t *testing.T) {
	tests := []struct {
		name string
		in   any
		raw  []byte
		want string
	}{
		{name: "map", in: map[string]any{"a": []any{1, -1, 300, -300, "x", nil, true}}, want: `{"a":[1,-1,300,-300,"x",null,true]}`},
		{name: "uint64", in: uint64(math.MaxUint64), want: `18446744073709551615`},
		{name: "int64", in: int64(math.MinInt64), want: `-9223372036854775808`},
		{name: "float32", in: float32(0.1), want: `0.1`},
		{name: "float64", in: 1e21, want: `1e+21`},
		{name: "small float", in: 1.5e-7, want: `1.5e-07`},
		{name: "string escapes", in: "a\"\n\x01", want: `"a\"\n\u0001"`},
		{name: "time.Time", in: time.Unix(2, 250_000_000), want: `"1970-01-01T00:00:02.250Z"`},
		{name: "timestamp32", raw: []byte{0xd6, 0xff, 0, 0, 0, 1}, want: `"1970-01-01T00:00:01.000Z"`},
		{name: "timestamp64", raw: []byte{0xd7, 0xff, 0x3b, 0x9a, 0xca, 0x00, 0, 0, 0, 2}, want: `"1970-01-01T00:00:02.250Z"`},
		{name: "timestamp96", raw: []byte{0xc7, 12, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, want: `"1969-12-31T23:59:59.000Z"`},
	}
	for _, tt := range tests {
		raw := tt.raw
		if raw == nil {
			var err error
			if raw, err = msgpack.Marshal(tt.in); err != nil {
				t.Fatal(err)
			}
		}
		got, used, err := appendJSONFromMsgpack(nil, raw, 0)
		if err != nil || used != len(raw) || string(got) != tt.want {
			t.Errorf("%s: got %s, %d of %d bytes, %v; want %s", tt.name, got, used, len(raw), err, tt.want)
		}
	}
}
