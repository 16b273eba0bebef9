package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func ptrBool(b bool) *bool { return &b }

// serverCases holds one value of every server message with its fields set.
var serverCases = []Message{
	&Connected{ID: 1, Client: "c1", User: "u1", Ping: 25, Exp: 1700000000, Node: "n1"},
	&Subscribed{ID: 2, S: "doc:1", Epoch: "e", Offset: 7, Recovered: ptrBool(true),
		Pubs:    []Pub{{S: "doc:1", Offset: 7, Epoch: "e", Data: MustRaw(map[string]any{"x": 1}), TS: 5}},
		Members: []Member{{User: "u", Client: "c", Info: MustRaw(map[string]any{"name": "Ann"}), State: MustRaw(map[string]any{"k": "v"})}},
		LV:      []Whisper{{S: "doc:1", Ev: "cursor", Data: MustRaw([]any{1, 2}), From: ClientInfo{User: "u", Client: "c"}}}},
	&Unsubscribed{ID: 3, S: "a"},
	&Pub{S: "a", Offset: 1, Epoch: "e", Data: MustRaw("hello"), From: &ClientInfo{User: "u", Client: "c"}, TS: 123},
	&Whisper{S: "a", Ev: "cursor", Data: MustRaw(map[string]any{"x": 1.5}), From: ClientInfo{User: "u", Client: "c"}},
	&Presence{S: "a", Joins: []Member{{User: "u", Client: "c"}}, Leaves: []ClientInfo{{User: "v", Client: "d"}},
		Updates: []MemberUpdate{{User: "u", Client: "c", State: MustRaw(map[string]any{"gone": nil})}}},
	&History{ID: 4, S: "a", Epoch: "e", Offset: 9, Pubs: []Pub{{S: "a", Offset: 9, Epoch: "e", Data: MustRaw(true), TS: 1}}, More: true},
	&Who{ID: 5, S: "a", Members: []Member{{User: "u", Client: "c"}}},
	&Ack{ID: 6, S: "a", Offset: 3, Epoch: "e"},
	&Refreshed{ID: 7, Exp: 99},
	&ErrorReply{ID: 8, S: "a", Code: CodeForbidden, Reason: "no", Retry: true},
	&Disconnect{Code: CodeShutdown, Reason: "bye", Reconnect: true},
	&Ping{},
	&Pong{},
}

var clientCases = []Message{
	&Connect{ID: 1, Token: "tok", UA: "sdk/1"},
	&Subscribe{ID: 2, S: "a", Recover: &Position{Epoch: "e", Offset: 4}, Presence: true, Join: MustRaw(map[string]any{"a": 1})},
	&Unsubscribe{ID: 3, S: "a"},
	&Publish{ID: 4, S: "a", Data: MustRaw(map[string]any{"text": "hi"})},
	&SendWhisper{S: "a", Ev: "cursor", Data: MustRaw([]any{1, 2})},
	&Join{ID: 5, S: "a", State: MustRaw(map[string]any{"typing": false})},
	&Update{S: "a", State: MustRaw(map[string]any{"typing": true})},
	&Leave{ID: 6, S: "a"},
	&HistoryRequest{ID: 7, S: "a", Since: &Position{Epoch: "e", Offset: 1}, Limit: 10, Reverse: true},
	&WhoRequest{ID: 8, S: "a"},
	&Refresh{ID: 9, Token: "t2"},
	&Ping{},
	&Pong{},
}

func TestRoundTrip(t *testing.T) {
	for _, c := range []Codec{Msgpack, JSON} {
		for _, tc := range []struct {
			name   string
			msgs   []Message
			decode func(Codec, []byte, []Decoded) ([]Decoded, error)
		}{
			{"server", serverCases, DecodeServer},
			{"client", clientCases, DecodeClient},
		} {
			t.Run(c.String()+"/"+tc.name, func(t *testing.T) {
				for _, m := range tc.msgs {
					frame, err := EncodeFrame(c, m)
					if err != nil {
						t.Fatalf("encode %T: %v", m, err)
					}
					got, err := tc.decode(c, frame, nil)
					if err != nil || len(got) != 1 || got[0].Err != nil {
						t.Fatalf("decode %T from %q: %v %+v", m, frame, err, got)
					}
					if !equalMsg(t, c, m, got[0].Msg) {
						t.Errorf("%T: got %+v, want %+v", m, got[0].Msg, m)
					}
				}
				// All in one frame.
				frame, err := EncodeFrame(c, tc.msgs...)
				if err != nil {
					t.Fatal(err)
				}
				got, err := tc.decode(c, frame, nil)
				if err != nil || len(got) != len(tc.msgs) {
					t.Fatalf("batch: %d messages, err %v", len(got), err)
				}
				for i := range got {
					if got[i].Msg == nil || got[i].Msg.Type() != tc.msgs[i].Type() {
						t.Errorf("batch[%d] = %+v, want type %s", i, got[i], tc.msgs[i].Type())
					}
				}
			})
		}
	}
}

// equalMsg compares by re-encoding in JSON, where Raw values compare by
// meaning rather than by msgpack bytes.
func equalMsg(t *testing.T, c Codec, want, got Message) bool {
	t.Helper()
	a, _ := json.Marshal(want)
	b, _ := json.Marshal(got)
	var va, vb any
	_ = json.Unmarshal(a, &va)
	_ = json.Unmarshal(b, &vb)
	return reflect.DeepEqual(va, vb)
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name      string
		codec     Codec
		frame     []byte
		malformed bool
		want      string // type of the single decoded message, or "err" for a message error
	}{
		{"json garbage", JSON, []byte("{nope"), true, ""},
		{"json not object", JSON, []byte(`[1,2]`), true, ""},
		{"json no t", JSON, []byte(`{"id":1}`), true, ""},
		{"json empty", JSON, []byte(""), true, ""},
		{"json unknown t", JSON, []byte(`{"t":"launch","id":3}`), false, "launch"},
		{"json bad field", JSON, []byte(`{"t":"sub","id":"x","s":"a"}`), false, "err"},
		{"json pretty", JSON, []byte("{\n \"t\": \"ping\"\n}\n{\"t\":\"pong\"}\n"), false, "ping"},
		{"msgpack garbage", Msgpack, []byte{0xc1}, true, ""},
		{"msgpack truncated", Msgpack, []byte{0x82, 0xa1, 't'}, true, ""},
		{"msgpack not map", Msgpack, []byte{0x93, 1, 2, 3}, true, ""},
		{"msgpack deep", Msgpack, bytes.Repeat([]byte{0x91}, 1000), true, ""},
		{"msgpack unknown t", Msgpack, MustRaw(map[string]any{"t": "x", "id": 4}), false, "x"},
		{"msgpack bad field", Msgpack, MustRaw(map[string]any{"t": "sub", "id": 1, "s": 5}), false, "err"},
		{"msgpack huge length", Msgpack, []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeClient(tc.codec, tc.frame, nil)
			if tc.malformed {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil || len(got) == 0 {
				t.Fatalf("err = %v, got %v", err, got)
			}
			if tc.want == "err" {
				if got[0].Err == nil {
					t.Fatalf("want message error, got %+v", got[0])
				}
				return
			}
			if got[0].Msg.Type() != tc.want {
				t.Fatalf("type = %q, want %q", got[0].Msg.Type(), tc.want)
			}
		})
	}
}

func TestUnknownKeepsID(t *testing.T) {
	got, err := DecodeClient(JSON, []byte(`{"t":"nope","id":42}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := got[0].Msg.(*Unknown); !ok || u.ID != 42 {
		t.Fatalf("got %+v", got[0].Msg)
	}
}

func TestJSONMsgpackConversion(t *testing.T) {
	for _, in := range []string{
		`null`, `true`, `false`, `0`, `-1`, `127`, `128`, `-33`, `65536`, `-2147483649`,
		`18446744073709551615`, `1.5`, `"héllo\n\"x\"<>&"`, `[]`, `{}`, `[1,[2,[3]]]`,
		`{"a":{"b":[1,"x",null]}}`,
	} {
		m, err := JSONToMsgpack(nil, []byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if err := Raw(m).Validate(); err != nil {
			t.Fatalf("%s: invalid msgpack: %v", in, err)
		}
		out, err := MsgpackToJSON(nil, m)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var a, b any
		_ = json.Unmarshal([]byte(in), &a)
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("%s -> %s: not JSON: %v", in, out, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s -> %s", in, out)
		}
	}
}

func TestMsgpackToJSONOddValues(t *testing.T) {
	cases := map[string]Raw{
		`{"1":"x"}`: MustRaw(map[int]string{1: "x"}),
		`"AQI="`:    MustRaw([]byte{1, 2}),
		`null`:      {0xd4, 1, 2},
	}
	for want, in := range cases {
		got, err := MsgpackToJSON(nil, in)
		if err != nil || string(got) != want {
			t.Errorf("%x -> %s, %v; want %s", []byte(in), got, err, want)
		}
	}
}

func TestAppendMessageAllocs(t *testing.T) {
	m := &Pub{S: "doc:1", Offset: 10, Epoch: "abc", Data: MustRaw(map[string]any{"x": 1}), TS: 1}
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = AppendMessage(Msgpack, buf[:0], m); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("AppendMessage(msgpack, pub) allocates %v times, want <= 2", allocs)
	}
}

func BenchmarkAppendMessage(b *testing.B) {
	m := &Pub{S: "doc:1", Offset: 10, Epoch: "abc", Data: MustRaw(map[string]any{"x": 1, "y": 2}), From: &ClientInfo{User: "u", Client: "c"}, TS: 1}
	for _, c := range []Codec{Msgpack, JSON} {
		b.Run("codec="+c.String(), func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 512)
			for i := 0; i < b.N; i++ {
				buf, _ = AppendMessage(c, buf[:0], m)
			}
		})
	}
}

func BenchmarkDecodeClient(b *testing.B) {
	for _, c := range []Codec{Msgpack, JSON} {
		frame, _ := EncodeFrame(c, &SendWhisper{S: "doc:1", Ev: "cursor", Data: MustRaw(map[string]any{"x": 100, "y": 200})})
		b.Run("whisper/codec="+c.String(), func(b *testing.B) {
			b.ReportAllocs()
			var dst []Decoded
			for i := 0; i < b.N; i++ {
				dst, _ = DecodeClient(c, frame, dst[:0])
			}
		})
	}
}
