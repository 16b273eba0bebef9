package wire

import "testing"

func TestDialect(t *testing.T) {
	tests := []struct {
		d            Dialect
		name         string
		ext, msgpack bool
	}{
		{JSON, "actioncable-v1-json", false, false},
		{ExtJSON, "actioncable-v1-ext-json", true, false},
		{Msgpack, "actioncable-v1-msgpack", false, true},
		{ExtMsgpack, "actioncable-v1-ext-msgpack", true, true},
	}
	for _, tt := range tests {
		if got := tt.d.Subprotocol(); got != tt.name {
			t.Errorf("%d.Subprotocol() = %q, want %q", tt.d, got, tt.name)
		}
		if tt.d.Ext() != tt.ext || tt.d.Msgpack() != tt.msgpack {
			t.Errorf("%v: Ext() = %v, Msgpack() = %v", tt.d, tt.d.Ext(), tt.d.Msgpack())
		}
		if d, ok := ParseSubprotocol(tt.name); !ok || d != tt.d {
			t.Errorf("ParseSubprotocol(%q) = %v, %v", tt.name, d, ok)
		}
	}
	for _, bad := range []string{"", "actioncable-v1-JSON", "actioncable-unsupported", "huddle.v1.json"} {
		if d, ok := ParseSubprotocol(bad); ok {
			t.Errorf("ParseSubprotocol(%q) = %v, want not ok", bad, d)
		}
	}
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name    string
		offered []string
		want    Dialect
		sub     string
	}{
		{"nothing offered", nil, JSON, ""},
		{"rails client", []string{"actioncable-v1-json, actioncable-unsupported"}, JSON, "actioncable-v1-json"},
		{"client order wins", []string{"actioncable-v1-ext-msgpack,actioncable-v1-json"}, ExtMsgpack, "actioncable-v1-ext-msgpack"},
		{"client order wins reversed", []string{"actioncable-v1-json,actioncable-v1-ext-msgpack"}, JSON, "actioncable-v1-json"},
		{"unknown first", []string{"actioncable-unsupported", "actioncable-v1-ext-json"}, ExtJSON, "actioncable-v1-ext-json"},
		{"several header lines", []string{"foo", " actioncable-v1-msgpack "}, Msgpack, "actioncable-v1-msgpack"},
		{"only unknown", []string{"graphql-ws, actioncable-unsupported"}, JSON, ""},
		{"empty tokens", []string{",, ,"}, JSON, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, sub := Negotiate(tt.offered)
			if d != tt.want || sub != tt.sub {
				t.Errorf("Negotiate(%q) = %v, %q; want %v, %q", tt.offered, d, sub, tt.want, tt.sub)
			}
		})
	}
}

func TestNegotiateBoundsTokens(t *testing.T) {
	offered := make([]string, 0, maxOffered+1)
	for range maxOffered {
		offered = append(offered, "x")
	}
	offered = append(offered, SubprotocolExtJSON)
	if d, sub := Negotiate(offered); d != JSON || sub != "" {
		t.Errorf("a dialect after %d unknown tokens was chosen: %v %q", maxOffered, d, sub)
	}
}
