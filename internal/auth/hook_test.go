package auth_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
)

func TestHooked(t *testing.T) {
	tests := []struct {
		name   string
		rules  []string
		op     auth.Op
		stream string
		want   bool
	}{
		{name: "default sub", op: auth.OpSub, stream: "doc:1", want: true},
		{name: "default pub", op: auth.OpPub, stream: "doc:1", want: true},
		{name: "no hook for history", op: auth.OpHistory, stream: "doc:1", want: false},
		{name: "no hook for whisper", op: auth.OpWhisper, stream: "doc:1", want: false},
		{name: "no hook for presence", op: auth.OpPresence, stream: "doc:1", want: false},
		{name: "invalid op", op: 0, stream: "doc:1", want: false},
		{name: "rule off", rules: []string{"public:=sub;subscribe-hook=off"}, op: auth.OpSub, stream: "public:news", want: false},
		{name: "rule off other stream", rules: []string{"public:=sub;subscribe-hook=off"}, op: auth.OpSub, stream: "doc:1", want: true},
		{name: "rule off other op", rules: []string{"public:=sub;subscribe-hook=off"}, op: auth.OpPub, stream: "public:news", want: true},
		{name: "opt in", rules: []string{"=;subscribe-hook=off;publish-hook=off", "doc:=;publish-hook=on"}, op: auth.OpPub, stream: "doc:1", want: true},
		{name: "opt in other prefix", rules: []string{"=;subscribe-hook=off;publish-hook=off", "doc:=;publish-hook=on"}, op: auth.OpPub, stream: "chat:1", want: false},
		{name: "opt in sub stays off", rules: []string{"=;subscribe-hook=off;publish-hook=off", "doc:=;publish-hook=on"}, op: auth.OpSub, stream: "doc:1", want: false},
		{name: "longest rule wins", rules: []string{"doc:secret:=;publish-hook=on", "doc:=;publish-hook=off"}, op: auth.OpPub, stream: "doc:secret:1", want: true},
		{name: "later equal prefix wins", rules: []string{"doc:=;publish-hook=on", "doc:*=;publish-hook=off"}, op: auth.OpPub, stream: "doc:1", want: false},
		{name: "rule without the option", rules: []string{"doc:=;history=5", "=;publish-hook=off"}, op: auth.OpPub, stream: "doc:1", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := newAllowedCase(t, nil, tt.rules)
			if got := a.Hooked(tt.op, tt.stream); got != tt.want {
				t.Errorf("Hooked(%v, %q) = %v, want %v", tt.op, tt.stream, got, tt.want)
			}
			if n := testing.AllocsPerRun(100, func() { a.Hooked(tt.op, tt.stream) }); n != 0 {
				t.Errorf("Hooked allocates %v times", n)
			}
		})
	}
}

func TestDenied(t *testing.T) {
	tests := []struct {
		name   string
		rules  []string
		op     auth.Op
		stream string
		want   bool
	}{
		{name: "nothing", op: auth.OpSub, stream: "doc:1", want: false},
		{name: "not granted is not denied", rules: []string{"doc:=pub"}, op: auth.OpSub, stream: "doc:1", want: false},
		{name: "deny", rules: []string{"doc:=;deny=pub"}, op: auth.OpPub, stream: "doc:1", want: true},
		{name: "deny beats allow", rules: []string{"doc:=pub", "=;deny=pub"}, op: auth.OpPub, stream: "doc:1", want: true},
		{name: "deny other stream", rules: []string{"doc:=;deny=pub"}, op: auth.OpPub, stream: "chat:1", want: false},
		{name: "presence off", rules: []string{"big:=;presence=off"}, op: auth.OpPresence, stream: "big:1", want: true},
		{name: "whisper off", rules: []string{"=;whisper=off"}, op: auth.OpWhisper, stream: "big:1", want: true},
		{name: "invalid op", op: 0, stream: "doc:1", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := newAllowedCase(t, nil, tt.rules)
			if got := a.Denied(tt.op, tt.stream); got != tt.want {
				t.Errorf("Denied(%v, %q) = %v, want %v", tt.op, tt.stream, got, tt.want)
			}
		})
	}
}

func TestNewIdentity(t *testing.T) {
	exp := time.Unix(1767225600, 0)
	a, _ := newAllowedCase(t, nil, []string{"ro:=;deny=pub"})
	id, err := auth.NewIdentity("alice", exp, json.RawMessage(` {"name":"Alice"} `), map[string][]string{"doc:42": {"sub", "pub"}, "ro:*": {"pub"}})
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "alice" || !id.Expires.Equal(exp) || string(id.Info) != `{"name":"Alice"}` {
		t.Errorf("NewIdentity = %+v", id)
	}
	for _, c := range []struct {
		op     auth.Op
		stream string
		want   bool
	}{
		{auth.OpSub, "doc:42", true}, {auth.OpPub, "doc:42", true}, {auth.OpHistory, "doc:42", false},
		{auth.OpSub, "doc:43", false}, {auth.OpPub, "ro:x", false},
	} {
		if got := a.Allowed(id, c.op, c.stream); got != c.want {
			t.Errorf("Allowed(%v, %q) = %v, want %v", c.op, c.stream, got, c.want)
		}
	}
	if id, err := auth.NewIdentity("", time.Time{}, json.RawMessage("null"), nil); err != nil || !id.Anonymous() || id.Info != nil || !id.Expires.IsZero() {
		t.Errorf("NewIdentity anonymous = %+v, %v", id, err)
	}
	for name, tt := range map[string]struct {
		info    string
		streams map[string][]string
	}{
		"info not an object": {info: `"Alice"`},
		"info not JSON":      {info: `{"name":`},
		"unknown op":         {streams: map[string][]string{"doc:1": {"write"}}},
		"bad pattern":        {streams: map[string][]string{"": {"sub"}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := auth.NewIdentity("alice", time.Time{}, json.RawMessage(tt.info), tt.streams)
			if !errors.Is(err, auth.ErrUnauthorized) {
				t.Errorf("NewIdentity error = %v, want ErrUnauthorized", err)
			}
		})
	}
}

func TestNewConnectHookOnly(t *testing.T) {
	a, err := auth.New(auth.Config{ConnectHook: true})
	if err != nil {
		t.Fatalf("New with only ConnectHook: %v", err)
	}
	if _, err := a.Verify(""); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("Verify(\"\") = %v, want ErrUnauthorized: a connect hook does not make clients anonymous", err)
	}
}
