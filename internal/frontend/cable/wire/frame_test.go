package wire

import (
	"fmt"
	"testing"
)

func TestFrames(t *testing.T) {
	pub := Publication{Data: []byte(`{"seq":1}`), Stream: "room-1", Epoch: "jF19", Offset: 2}
	tests := []struct {
		name  string
		body  func(Dialect) Body
		plain string // "" means the zero Body
		ext   string
	}{
		{"broadcast (transcript)", func(d Dialect) Body { return NewBroadcastBody(d, pub) },
			`{"identifier":` + I + `,"message":{"seq":1}}`,
			`{"identifier":` + I + `,"message":{"seq":1},"stream_id":"room-1","epoch":"jF19","offset":2}`},
		{"broadcast without history", func(d Dialect) Body {
			return NewBroadcastBody(d, Publication{Data: []byte(`[1,2]`), Stream: "s"})
		}, `{"identifier":` + I + `,"message":[1,2]}`, `{"identifier":` + I + `,"message":[1,2]}`},
		{"broadcast of a non-JSON string", func(d Dialect) Body {
			return NewBroadcastBody(d, Publication{Data: []byte(`hello "world"`), Stream: "s", Epoch: "e", Offset: 1 << 40})
		}, `{"identifier":` + I + `,"message":"hello \"world\""}`,
			`{"identifier":` + I + `,"message":"hello \"world\"","stream_id":"s","epoch":"e","offset":1099511627776}`},
		{"broadcast of a JSON string", func(d Dialect) Body {
			return NewBroadcastBody(d, Publication{Data: []byte(`"hi"`)})
		}, `{"identifier":` + I + `,"message":"hi"}`, `{"identifier":` + I + `,"message":"hi"}`},
		{"whisper (transcript)", func(d Dialect) Body { return NewWhisperBody(d, []byte(`{"event":"typing","user":"alice"}`)) },
			`{"identifier":` + I + `,"message":{"event":"typing","user":"alice"}}`,
			`{"identifier":` + I + `,"message":{"event":"typing","user":"alice"}}`},
		{"presence join (transcript)", func(d Dialect) Body {
			return NewPresenceBody(d, PresenceEvent{Type: PresenceJoin, ID: "user-a", Info: []byte(`{"name":"Alice"}`)})
		}, "", `{"type":"presence","identifier":` + I + `,"message":{"type":"join","id":"user-a","info":{"name":"Alice"}}}`},
		{"presence leave (transcript)", func(d Dialect) Body {
			return NewPresenceBody(d, PresenceEvent{Type: PresenceLeave, ID: "user-a"})
		}, "", `{"type":"presence","identifier":` + I + `,"message":{"type":"leave","id":"user-a"}}`},
	}
	for _, tt := range tests {
		for _, d := range allDialects {
			t.Run(fmt.Sprintf("%s/%v", tt.name, d), func(t *testing.T) {
				p := NewPrefix(d, testIdentifier)
				b := tt.body(d)
				want := tt.plain
				if d.Ext() {
					want = tt.ext
				}
				if want == "" {
					if !b.IsZero() || len(AppendFrame(nil, &p, &b)) != 0 {
						t.Fatalf("plain dialect got a presence frame %q", b.Bytes())
					}
					return
				}
				frame := AppendFrame(nil, &p, &b)
				assertMessage(t, d, frame, want)
				vectored := append(append([]byte(nil), p.For(&b)...), b.Bytes()...)
				if string(vectored) != string(frame) {
					t.Errorf("For+Bytes %q differs from AppendFrame %q", vectored, frame)
				}
			})
		}
	}
}

// One body serves subscriptions with different identifiers, and one prefix
// serves bodies of every shape.
func TestFramesShareParts(t *testing.T) {
	for _, d := range []Dialect{ExtJSON, ExtMsgpack} {
		bodies := []Body{
			NewBroadcastBody(d, Publication{Data: []byte(`1`), Stream: "s", Epoch: "e", Offset: 3}),
			NewWhisperBody(d, []byte(`2`)),
			NewPresenceBody(d, PresenceEvent{Type: PresenceLeave, ID: "u"}),
		}
		wants := []string{
			`{"identifier":%s,"message":1,"stream_id":"s","epoch":"e","offset":3}`,
			`{"identifier":%s,"message":2}`,
			`{"type":"presence","identifier":%s,"message":{"type":"leave","id":"u"}}`,
		}
		for _, id := range []string{"a", testIdentifier, string(make([]byte, 300))} {
			p := NewPrefix(d, id)
			for i := range bodies {
				assertMessage(t, d, AppendFrame(nil, &p, &bodies[i]), fmt.Sprintf(wants[i], appendJSONString(nil, id)))
			}
		}
	}
}

func TestAppendFrameAllocs(t *testing.T) {
	for _, d := range allDialects {
		p := NewPrefix(d, testIdentifier)
		b := NewBroadcastBody(d, Publication{Data: []byte(`{"seq":1}`), Stream: "room-1", Epoch: "e", Offset: 1})
		buf := make([]byte, 0, 256)
		if n := testing.AllocsPerRun(100, func() { buf = AppendFrame(buf[:0], &p, &b) }); n != 0 {
			t.Errorf("%v: AppendFrame allocates %v times", d, n)
		}
	}
}

func TestFrameDialectMismatchPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a JSON prefix with a msgpack body")
		}
	}()
	p := NewPrefix(JSON, "x")
	b := NewWhisperBody(Msgpack, []byte(`1`))
	AppendFrame(nil, &p, &b)
}

func BenchmarkNewBroadcastBody(b *testing.B) {
	data := []byte(`{"id":123456,"user":{"name":"Alice","tags":["a","b","c"]},"text":"hello, world","score":1.25,"ok":true}`)
	for _, d := range allDialects {
		b.Run(d.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				NewBroadcastBody(d, Publication{Data: data, Stream: "room-1", Epoch: "e", Offset: 42})
			}
		})
	}
}
