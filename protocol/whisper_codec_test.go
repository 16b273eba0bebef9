package protocol

import (
	"bytes"
	"strings"
	"testing"
)

// reflectMsgpack encodes m the general way, bypassing any fast path.
func reflectMsgpack(t *testing.T, m Message) []byte {
	t.Helper()
	e := encoders.Get().(*msgpackEncoder)
	defer encoders.Put(e)
	e.w.b = nil
	if err := e.enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	b, err := insertMsgpackType(e.w.b, 0, m.Type())
	if err != nil {
		t.Fatal(err)
	}
	e.w.b = nil
	return b
}

// TestWhisperMsgpackFastPath: the hand-written whisper encoder writes the
// bytes the reflective one does, for short and long strings and empty data,
// and what it writes decodes back to the same whisper.
func TestWhisperMsgpackFastPath(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, w := range []*Whisper{
		{S: "doc:1", Ev: "cursor", Data: MustRaw(map[string]int{"x": 1, "y": 2}), From: ClientInfo{User: "ann", Client: "c1"}},
		{S: strings.Repeat("s", 40), Ev: strings.Repeat("e", 64), Data: MustRaw(long), From: ClientInfo{User: long, Client: strings.Repeat("c", 36)}},
		{S: "a", Ev: "b", Data: RawNil},
		{S: "a", Ev: "b"}, // no data: nil
		{S: strings.Repeat("s", 70000), Ev: "b", Data: MustRaw([]int{1, 2, 3})},
	} {
		got, err := AppendMessage(Msgpack, []byte("prefix"), w)
		if err != nil {
			t.Fatal(err)
		}
		want := append([]byte("prefix"), reflectMsgpack(t, w)...)
		if !bytes.Equal(got, want) {
			t.Fatalf("whisper %.40q...: fast path\n%x\nreflective\n%x", w.S, got, want)
		}
		msgs, err := DecodeServer(Msgpack, got[len("prefix"):], nil)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("decode: %v, %d messages", err, len(msgs))
		}
		back, ok := msgs[0].Msg.(*Whisper)
		if !ok || back.S != w.S || back.Ev != w.Ev || back.From != w.From {
			t.Fatalf("decoded %+v", msgs[0].Msg)
		}
	}
}
