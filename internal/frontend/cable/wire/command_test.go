package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const testIdentifier = `{"channel":"$pubsub","stream_name":"room-1"}`

func TestDecodeCommand(t *testing.T) {
	idJSON, _ := json.Marshal(testIdentifier)
	id := string(idJSON)
	tests := []struct {
		name string
		in   string
		want Command
	}{
		{"subscribe", `{"command":"subscribe","identifier":` + id + `}`,
			Command{Kind: CmdSubscribe, Name: "subscribe", Identifier: testIdentifier}},
		{"subscribe with history (transcript)", `{"command":"subscribe","identifier":` + id + `,"history":{"since":1796288358,"streams":{}}}`,
			Command{Kind: CmdSubscribe, Name: "subscribe", Identifier: testIdentifier,
				History: &HistoryRequest{Since: 1796288358, Streams: map[string]StreamPosition{}}}},
		{"unsubscribe", `{"identifier":` + id + `,"command":"unsubscribe"}`,
			Command{Kind: CmdUnsubscribe, Name: "unsubscribe", Identifier: testIdentifier}},
		{"message with a JSON string", `{"command":"message","identifier":` + id + `,"data":"{\"action\":\"speak\",\"text\":\"hi\"}"}`,
			Command{Kind: CmdMessage, Name: "message", Identifier: testIdentifier, Data: json.RawMessage(`"{\"action\":\"speak\",\"text\":\"hi\"}"`)}},
		{"whisper with an object", `{"command":"whisper","identifier":` + id + `,"data":{"event":"typing","user":"alice"}}`,
			Command{Kind: CmdWhisper, Name: "whisper", Identifier: testIdentifier, Data: json.RawMessage(`{"event":"typing","user":"alice"}`)}},
		{"history (transcript)", `{"command":"history","identifier":` + id + `,"history":{"since":1796288359,"streams":{"room-1":{"epoch":"jF19","offset":5}}}}`,
			Command{Kind: CmdHistory, Name: "history", Identifier: testIdentifier,
				History: &HistoryRequest{Since: 1796288359, Streams: map[string]StreamPosition{"room-1": {"jF19", 5}}}}},
		{"history with a huge offset", `{"command":"history","identifier":` + id + `,"history":{"streams":{"s":{"epoch":"e","offset":18446744073709551615}}}}`,
			Command{Kind: CmdHistory, Name: "history", Identifier: testIdentifier,
				History: &HistoryRequest{Streams: map[string]StreamPosition{"s": {"e", 1<<64 - 1}}}}},
		{"join (transcript)", `{"command":"join","identifier":` + id + `,"presence":{"id":"user-a","info":{"name":"Alice"}}}`,
			Command{Kind: CmdJoin, Name: "join", Identifier: testIdentifier, Presence: &PresenceRequest{ID: "user-a", Info: json.RawMessage(`{"name":"Alice"}`)}}},
		{"leave without presence", `{"command":"leave","identifier":` + id + `}`,
			Command{Kind: CmdLeave, Name: "leave", Identifier: testIdentifier}},
		{"presence with data", `{"command":"presence","identifier":` + id + `,"data":{}}`,
			Command{Kind: CmdPresence, Name: "presence", Identifier: testIdentifier, Data: json.RawMessage(`{}`)}},
		{"pong", `{"command":"pong"}`, Command{Kind: CmdPong, Name: "pong"}},
		{"unknown command", `{"command":"dance","identifier":"x"}`, Command{Kind: CmdUnknown, Name: "dance", Identifier: "x"}},
		{"unknown command without identifier", `{"command":"dance"}`, Command{Kind: CmdUnknown, Name: "dance"}},
		{"unknown fields ignored", `{"command":"unsubscribe","identifier":"x","extra":[1,{"a":null}]}`,
			Command{Kind: CmdUnsubscribe, Name: "unsubscribe", Identifier: "x"}},
		{"null data is absent", `{"command":"presence","identifier":"x","data":null}`,
			Command{Kind: CmdPresence, Name: "presence", Identifier: "x"}},
		{"unusual identifier kept as sent", `{"command":"subscribe","identifier":"{ \"channel\" : \"A\\u00e9\" }"}`,
			Command{Kind: CmdSubscribe, Name: "subscribe", Identifier: `{ "channel" : "A\u00e9" }`}},
	}
	for _, tt := range tests {
		for _, d := range allDialects {
			t.Run(fmt.Sprintf("%s/%v", tt.name, d), func(t *testing.T) {
				frame := []byte(tt.in)
				if d.Msgpack() {
					frame = toMsgpack(t, tt.in)
				}
				got, err := DecodeCommand(d, frame)
				if err != nil {
					t.Fatalf("DecodeCommand: %v", err)
				}
				assertCommand(t, d, got, tt.want)
			})
		}
	}
}

func assertCommand(t *testing.T, d Dialect, got, want Command) {
	t.Helper()
	gotData, wantData := got.Data, want.Data
	got.Data, want.Data = nil, nil
	var gotInfo, wantInfo json.RawMessage
	if got.Presence != nil && want.Presence != nil {
		gp, wp := *got.Presence, *want.Presence
		gotInfo, wantInfo = gp.Info, wp.Info
		gp.Info, wp.Info = nil, nil
		got.Presence, want.Presence = &gp, &wp
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	for _, raw := range [][2]json.RawMessage{{gotData, wantData}, {gotInfo, wantInfo}} {
		g, w := raw[0], raw[1]
		if (g == nil) != (w == nil) {
			t.Errorf("raw JSON %q, want %q", g, w)
			continue
		}
		if g == nil {
			continue
		}
		if !d.Msgpack() && string(g) != string(w) { // JSON dialects keep the bytes
			t.Errorf("raw JSON %q, want %q", g, w)
		}
		if !reflect.DeepEqual(parseJSON(t, g), parseJSON(t, w)) {
			t.Errorf("raw JSON %q, want %q", g, w)
		}
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	long := strings.Repeat("a", MaxIdentifierLen+1)
	var many strings.Builder
	many.WriteString(`{"command":"history","identifier":"x","history":{"streams":{`)
	for i := range MaxHistoryStreams + 1 {
		if i > 0 {
			many.WriteByte(',')
		}
		fmt.Fprintf(&many, `"s%d":{"epoch":"e","offset":1}`, i)
	}
	many.WriteString(`}}}`)
	tests := []struct {
		name, in string
		kind     CommandKind
		id       string
	}{
		{"empty", ``, CmdUnknown, ""},
		{"not an object", `["subscribe"]`, CmdUnknown, ""},
		{"truncated", `{"command":"subscribe","identifier":"x"`, CmdSubscribe, "x"},
		{"trailing data", `{"command":"pong"} {}`, CmdPong, ""},
		{"no command", `{"identifier":"x"}`, CmdUnknown, "x"},
		{"command not a string", `{"command":1}`, CmdUnknown, ""},
		{"key case matters", `{"Command":"pong"}`, CmdUnknown, ""},
		{"no identifier", `{"command":"subscribe"}`, CmdSubscribe, ""},
		{"identifier not a string", `{"command":"subscribe","identifier":{"channel":"A"}}`, CmdSubscribe, ""},
		{"identifier too long", `{"command":"subscribe","identifier":"` + long + `"}`, CmdSubscribe, ""},
		{"message without data", `{"command":"message","identifier":"x"}`, CmdMessage, "x"},
		{"whisper with null data", `{"command":"whisper","identifier":"x","data":null}`, CmdWhisper, "x"},
		{"history without history", `{"command":"history","identifier":"x"}`, CmdHistory, "x"},
		{"history not an object", `{"command":"history","identifier":"x","history":5}`, CmdHistory, "x"},
		{"since not a number", `{"command":"history","identifier":"x","history":{"since":"now"}}`, CmdHistory, "x"},
		{"since negative", `{"command":"history","identifier":"x","history":{"since":-1}}`, CmdHistory, "x"},
		{"offset negative", `{"command":"history","identifier":"x","history":{"streams":{"s":{"epoch":"e","offset":-1}}}}`, CmdHistory, "x"},
		{"offset missing", `{"command":"history","identifier":"x","history":{"streams":{"s":{"epoch":"e"}}}}`, CmdHistory, "x"},
		{"epoch not a string", `{"command":"history","identifier":"x","history":{"streams":{"s":{"epoch":1,"offset":1}}}}`, CmdHistory, "x"},
		{"too many history streams", many.String(), CmdHistory, "x"},
		{"join without presence", `{"command":"join","identifier":"x"}`, CmdJoin, "x"},
		{"join without id", `{"command":"join","identifier":"x","presence":{"info":{}}}`, CmdJoin, "x"},
		{"presence id not a string", `{"command":"join","identifier":"x","presence":{"id":7}}`, CmdJoin, "x"},
		{"presence id too long", `{"command":"join","identifier":"x","presence":{"id":"` + strings.Repeat("i", MaxPresenceIDLen+1) + `"}}`, CmdJoin, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeCommand(JSON, []byte(tt.in))
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeCommand(%.80q) = %v, want a *DecodeError", tt.in, err)
			}
			if de.Kind != tt.kind || de.Identifier != tt.id || de.Reason == "" {
				t.Errorf("error %+v, want kind %v identifier %q", de, tt.kind, tt.id)
			}
		})
	}
}

func TestDecodeCommandMsgpackErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"not a map", []byte{0x91, 0xa4, 'p', 'o', 'n', 'g'}},
		{"json in a binary frame", []byte(`{"command":"pong"}`)},
		{"truncated", toMsgpack(t, `{"command":"pong"}`)[:5]},
		{"trailing bytes", append(toMsgpack(t, `{"command":"pong"}`), 0xc0)},
		{"integer key", []byte{0x81, 0x01, 0xc0}},
		{"binary value", []byte{0x82, 0xa7, 'c', 'o', 'm', 'm', 'a', 'n', 'd', 0xa4, 'p', 'o', 'n', 'g', 0xa4, 'd', 'a', 't', 'a', 0xc4, 0x01, 0x00}},
		{"map count larger than input", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
		{"reserved byte", []byte{0x81, 0xa1, 'a', 0xc1}},
		{"NaN", []byte{0x81, 0xa1, 'a', 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1}},
		{"unknown extension", []byte{0x81, 0xa1, 'a', 0xd4, 0x05, 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeCommand(Msgpack, tt.in)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("DecodeCommand(% x) = %v, want a *DecodeError", tt.in, err)
			}
		})
	}
}

func TestDecodeCommandMsgpackDepth(t *testing.T) {
	b := []byte{0x82, 0xa7, 'c', 'o', 'm', 'm', 'a', 'n', 'd', 0xa4, 'p', 'o', 'n', 'g', 0xa4, 'd', 'a', 't', 'a'}
	for range maxMsgpackDepth + 1 {
		b = append(b, 0x91)
	}
	b = append(b, 0xc0)
	if _, err := DecodeCommand(Msgpack, b); err == nil {
		t.Fatal("a too deeply nested msgpack command decoded")
	}
}

func TestDataString(t *testing.T) {
	tests := []struct {
		data string
		want string
		ok   bool
	}{
		{`"{\"action\":\"speak\"}"`, `{"action":"speak"}`, true},
		{`{"action":"speak"}`, "", false},
		{``, "", false},
		{`"unterminated`, "", false},
	}
	for _, tt := range tests {
		c := Command{Data: json.RawMessage(tt.data)}
		if tt.data == "" {
			c.Data = nil
		}
		if got, ok := c.DataString(); got != tt.want || ok != tt.ok {
			t.Errorf("DataString(%q) = %q, %v; want %q, %v", tt.data, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseIdentifier(t *testing.T) {
	tests := []struct {
		in      string
		want    Identifier
		wantErr bool
	}{
		{`{"channel":"$pubsub","stream_name":"room-1"}`, Identifier{Channel: "$pubsub", StreamName: "room-1"}, false},
		{`{"channel":"Turbo::StreamsChannel","signed_stream_name":"abc--00"}`, Identifier{Channel: TurboChannel, SignedStreamName: "abc--00"}, false},
		{`{"channel":"ChatChannel","id":42,"stream_name":7}`, Identifier{Channel: "ChatChannel"}, false},
		{`{"stream_name":"x","channel":"ChatChannel","nested":{"channel":"no"}}`, Identifier{Channel: "ChatChannel", StreamName: "x"}, false},
		{`{"Channel":"ChatChannel"}`, Identifier{}, true},
		{`{"channel":""}`, Identifier{}, true},
		{`{"channel":1}`, Identifier{}, true},
		{`"ChatChannel"`, Identifier{}, true},
		{`{"channel":"A"`, Identifier{}, true},
		{`{"channel":"A"}x`, Identifier{}, true},
		{`{"channel":"` + strings.Repeat("a", MaxIdentifierLen) + `"}`, Identifier{}, true},
	}
	for _, tt := range tests {
		got, err := ParseIdentifier(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseIdentifier(%.60q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
