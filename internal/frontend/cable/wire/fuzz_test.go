package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

var commandSeeds = []string{
	`{"command":"subscribe","identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"room-1\"}","history":{"since":1796288358,"streams":{}}}`,
	`{"command":"history","identifier":"x","history":{"since":1796288359,"streams":{"room-1":{"epoch":"jF19","offset":5}}}}`,
	`{"command":"message","identifier":"x","data":"{\"action\":\"speak\"}"}`,
	`{"command":"whisper","identifier":"x","data":{"event":"typing","user":"alice","n":[1,2.5,-3e2,null]}}`,
	`{"command":"join","identifier":"x","presence":{"id":"user-a","info":{"name":"Alice"}}}`,
	`{"command":"leave","identifier":"x","presence":{"id":"user-a"}}`,
	`{"command":"presence","identifier":"x","data":{"return_records":false}}`,
	`{"command":"pong"}`,
	`{"command":"dance","identifier":"x"}`,
	`{"command":"subscribe","command":"pong","identifier":"\ud800\u00e9"}`,
	`{"command":"history","identifier":"x","history":{"streams":{"s":{"epoch":"e","offset":1.0}}}}`,
	`[]`, ``, `{`, `{"command":"subscribe","identifier":"x"} x`,
}

func FuzzDecodeCommand(f *testing.F) {
	for _, s := range commandSeeds {
		f.Add(false, []byte(s))
		if json.Valid([]byte(s)) {
			if b, err := appendMsgpackFromJSON(nil, []byte(s)); err == nil {
				f.Add(true, b)
			}
		}
	}
	f.Add(true, []byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add(true, []byte{0x81, 0xa1, 'a', 0xd6, 0xff, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, binary bool, frame []byte) {
		d := ExtJSON
		if binary {
			d = ExtMsgpack
		}
		cmd, err := DecodeCommand(d, frame)
		if err != nil {
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			return
		}
		if len(cmd.Identifier) > MaxIdentifierLen || len(cmd.Name) > maxCommandNameLen {
			t.Fatalf("limits exceeded: %+v", cmd)
		}
		if cmd.History != nil && len(cmd.History.Streams) > MaxHistoryStreams {
			t.Fatalf("%d history streams", len(cmd.History.Streams))
		}
		for _, raw := range []json.RawMessage{cmd.Data, presenceInfo(cmd)} {
			if raw != nil && !json.Valid(raw) {
				t.Fatalf("raw JSON %q is invalid", raw)
			}
		}
		if binary || bytes.Count(frame, []byte("["))+bytes.Count(frame, []byte("{")) > maxMsgpackDepth-2 {
			return
		}
		// The same command as msgpack decodes the same.
		mp, err := appendMsgpackFromJSON(nil, frame)
		if err != nil {
			t.Fatalf("a decodable command does not convert: %v", err)
		}
		cmd2, err := DecodeCommand(ExtMsgpack, mp)
		if err != nil {
			t.Fatalf("JSON decodes, msgpack does not: %v", err)
		}
		if cmd.Kind != cmd2.Kind || cmd.Name != cmd2.Name || cmd.Identifier != cmd2.Identifier ||
			!reflect.DeepEqual(cmd.History, cmd2.History) || (cmd.Data == nil) != (cmd2.Data == nil) ||
			(cmd.Presence == nil) != (cmd2.Presence == nil) {
			t.Fatalf("JSON %+v\nmsgpack %+v", cmd, cmd2)
		}
	})
}

func presenceInfo(c Command) json.RawMessage {
	if c.Presence == nil {
		return nil
	}
	return c.Presence.Info
}

func FuzzMsgpackFromJSON(f *testing.F) {
	for _, s := range commandSeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{`9007199254740993`, `-1e400`, `[1,[2,[3]]]`, `"\u00e9\ud83d\ude00"`, `{"a":{},"b":[]}`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		mp, err := appendMsgpackFromJSON(nil, src)
		if !json.Valid(src) {
			if err == nil {
				t.Fatal("invalid JSON converted")
			}
			return
		}
		if err != nil {
			t.Fatalf("valid JSON failed: %v", err)
		}
		r := bytes.NewReader(mp)
		var v any
		if err := msgpack.NewDecoder(r).Decode(&v); err != nil || r.Len() != 0 {
			t.Fatalf("msgpack % x does not decode whole: %v", mp, err)
		}
		back, used, err := appendJSONFromMsgpack(nil, mp, 0)
		if err != nil {
			if err == errTooDeep || err == errNonFinite {
				return
			}
			t.Fatalf("msgpack back to JSON: %v", err)
		}
		if used != len(mp) {
			t.Fatalf("used %d of %d bytes", used, len(mp))
		}
		var a, b any
		if json.Unmarshal(src, &a) != nil {
			return // numbers out of float64 range
		}
		if err := json.Unmarshal(back, &b); err != nil {
			t.Fatalf("round trip %q is invalid: %v", back, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip of %q gave %q", src, back)
		}
	})
}
