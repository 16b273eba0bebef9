package wire

import (
	"fmt"
	"testing"
)

// I is testIdentifier as a JSON string, for expected messages.
const I = `"{\"channel\":\"$pubsub\",\"stream_name\":\"room-1\"}"`

func TestServerMessages(t *testing.T) {
	tests := []struct {
		name   string
		encode func(Dialect) []byte
		plain  string // expected in JSON and Msgpack; "" means nothing is written
		ext    string // expected in ExtJSON and ExtMsgpack
	}{
		{"welcome", func(d Dialect) []byte { return AppendWelcome(nil, d, Welcome{SID: "VLO7LjDC4L086fmBEOTfY"}) },
			`{"type":"welcome"}`, `{"type":"welcome","sid":"VLO7LjDC4L086fmBEOTfY"}`},
		{"welcome without sid", func(d Dialect) []byte { return AppendWelcome(nil, d, Welcome{}) },
			`{"type":"welcome"}`, `{"type":"welcome"}`},
		{"welcome restored", func(d Dialect) []byte {
			return AppendWelcome(nil, d, Welcome{SID: "dSmi", Restored: true, RestoredIDs: []string{testIdentifier, "b"}})
		}, `{"type":"welcome"}`, `{"type":"welcome","sid":"dSmi","restored":true,"restored_ids":[` + I + `,"b"]}`},
		{"welcome restored nothing", func(d Dialect) []byte { return AppendWelcome(nil, d, Welcome{SID: "s", Restored: true}) },
			`{"type":"welcome"}`, `{"type":"welcome","sid":"s","restored":true,"restored_ids":[]}`},
		{"ping", func(d Dialect) []byte { return AppendPing(nil, d, 1796288274) },
			`{"type":"ping","message":1796288274}`, `{"type":"ping","message":1796288274}`},
		{"confirm_subscription", func(d Dialect) []byte { return AppendReply(nil, d, ConfirmSubscription, testIdentifier) },
			`{"type":"confirm_subscription","identifier":` + I + `}`, `{"type":"confirm_subscription","identifier":` + I + `}`},
		{"reject_subscription", func(d Dialect) []byte { return AppendReply(nil, d, RejectSubscription, testIdentifier) },
			`{"type":"reject_subscription","identifier":` + I + `}`, `{"type":"reject_subscription","identifier":` + I + `}`},
		{"confirm_history", func(d Dialect) []byte { return AppendReply(nil, d, ConfirmHistory, testIdentifier) },
			``, `{"type":"confirm_history","identifier":` + I + `}`},
		{"reject_history", func(d Dialect) []byte { return AppendReply(nil, d, RejectHistory, testIdentifier) },
			``, `{"type":"reject_history","identifier":` + I + `}`},
		{"disconnect", func(d Dialect) []byte { return AppendDisconnect(nil, d, ReasonTokenExpired, false) },
			`{"type":"disconnect","reason":"token_expired","reconnect":false}`, `{"type":"disconnect","reason":"token_expired","reconnect":false}`},
		{"disconnect reconnect", func(d Dialect) []byte { return AppendDisconnect(nil, d, ReasonServerRestart, true) },
			`{"type":"disconnect","reason":"server_restart","reconnect":true}`, `{"type":"disconnect","reason":"server_restart","reconnect":true}`},
		{"presence info", func(d Dialect) []byte {
			return AppendPresenceInfo(nil, d, testIdentifier, 1, []PresenceRecord{{ID: "user-a", Info: []byte(`{"name":"Alice"}`)}, {ID: "user-b"}})
		}, ``, `{"type":"presence","identifier":` + I + `,"message":{"type":"info","total":1,"records":[{"id":"user-a","info":{"name":"Alice"}},{"id":"user-b"}]}}`},
		{"presence info empty (transcript)", func(d Dialect) []byte { return AppendPresenceInfo(nil, d, testIdentifier, 0, nil) },
			``, `{"type":"presence","identifier":` + I + `,"message":{"type":"info","total":0}}`},
		{"presence info no records", func(d Dialect) []byte { return AppendPresenceInfo(nil, d, testIdentifier, 0, []PresenceRecord{}) },
			``, `{"type":"presence","identifier":` + I + `,"message":{"type":"info","total":0,"records":[]}}`},
		{"presence error", func(d Dialect) []byte { return AppendPresenceError(nil, d, testIdentifier) },
			``, `{"type":"presence","identifier":` + I + `,"message":{"type":"error"}}`},
	}
	for _, tt := range tests {
		for _, d := range allDialects {
			t.Run(fmt.Sprintf("%s/%v", tt.name, d), func(t *testing.T) {
				want := tt.plain
				if d.Ext() {
					want = tt.ext
				}
				got := tt.encode(d)
				if want == "" {
					if len(got) != 0 {
						t.Fatalf("wrote %q for a message the dialect does not have", got)
					}
					return
				}
				assertMessage(t, d, got, want)
				// Appending keeps what dst held.
				again := tt.encode(d)
				if string(again) != string(got) {
					t.Fatal("encoding is not deterministic")
				}
			})
		}
	}
}

func TestAppendKeepsDst(t *testing.T) {
	for _, d := range allDialects {
		dst := []byte("head")
		out := AppendPing(dst, d, 5)
		if string(out[:4]) != "head" {
			t.Errorf("%v: dst clobbered: %q", d, out)
		}
		assertMessage(t, d, out[4:], `{"type":"ping","message":5}`)
	}
}

func TestAppendTransmission(t *testing.T) {
	msg := `{"identifier":` + I + `,"message":{"n":9007199254740993,"x":[1.5,-2,"é",null,true]}}`
	for _, d := range allDialects {
		got, err := AppendTransmission(nil, d, []byte(msg))
		if err != nil {
			t.Fatalf("%v: %v", d, err)
		}
		assertMessage(t, d, got, msg)
		if !d.Msgpack() && string(got) != msg {
			t.Errorf("%v: JSON transmission changed: %s", d, got)
		}
		if _, err := AppendTransmission(nil, d, []byte(`{"a":`)); err == nil {
			t.Errorf("%v: invalid JSON accepted", d)
		}
	}
}

func TestJSONStringEscaping(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{`q"b\`, `"q\"b\\"`},
		{"\b\f\n\r\t\x00\x1f", `"\b\f\n\r\t\u0000\u001f"`},
		{"é ✓ </script> \u2028", "\"é ✓ </script> \u2028\""},
		{"bad\xffutf8", "\"bad\ufffdutf8\""},
	}
	for _, tt := range tests {
		if got := string(appendJSONString(nil, tt.in)); got != tt.want {
			t.Errorf("appendJSONString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
