package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

var allDialects = []Dialect{JSON, ExtJSON, Msgpack, ExtMsgpack}

// decodeMessage decodes one whole server message of dialect d with an
// independent decoder (encoding/json or vmihailenco/msgpack) into a generic
// value whose numbers are json.Number, failing on trailing bytes.
func decodeMessage(t *testing.T, d Dialect, b []byte) any {
	t.Helper()
	if !d.Msgpack() {
		if !json.Valid(b) {
			t.Fatalf("%v: invalid JSON %q", d, b)
		}
		return parseJSON(t, b)
	}
	r := bytes.NewReader(b)
	dec := msgpack.NewDecoder(r)
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v: msgpack decode %x: %v", d, b, err)
	}
	if r.Len() != 0 {
		t.Fatalf("%v: %d bytes after the msgpack value in %x", d, r.Len(), b)
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%v: msgpack value %#v has no JSON form: %v", d, v, err)
	}
	return parseJSON(t, js)
}

func parseJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("parse %q: %v", b, err)
	}
	return v
}

// assertMessage checks that b, a message in dialect d, decodes to the object
// in want (JSON text).
func assertMessage(t *testing.T, d Dialect, b []byte, want string) {
	t.Helper()
	got := decodeMessage(t, d, b)
	if w := parseJSON(t, []byte(want)); !reflect.DeepEqual(got, w) {
		gj, _ := json.Marshal(got)
		t.Errorf("%v: got %s\nwant %s", d, gj, want)
	}
}

// toMsgpack encodes a JSON text as msgpack with the independent encoder, for
// client frames.
func toMsgpack(t testing.TB, js string) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(js)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("parse %q: %v", js, err)
	}
	b, err := msgpack.Marshal(numbersToGo(v))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func numbersToGo(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return u
		}
		f, _ := v.Float64()
		return f
	case map[string]any:
		for k, e := range v {
			v[k] = numbersToGo(e)
		}
	case []any:
		for i, e := range v {
			v[i] = numbersToGo(e)
		}
	}
	return v
}
