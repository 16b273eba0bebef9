package auth_test

import (
	"cmp"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/auth/authtest"
)

func TestParseRule(t *testing.T) {
	ops := auth.OpsOf
	tests := []struct {
		in   string
		want auth.Rule
		str  string // String(); "" means tt.in
	}{
		{
			in: "chat:=sub,pub,history;history=100;ttl=5m;presence=on;whisper=off;deny=pub",
			want: auth.Rule{
				Prefix: "chat:", Allow: ops(auth.OpSub, auth.OpPub, auth.OpHistory), Deny: ops(auth.OpPub),
				HistorySize: 100, HistoryTTL: 5 * time.Minute, Presence: ptr(true), Whisper: ptr(false),
			},
			str: "chat:*=sub,pub,history;deny=pub;history=100;ttl=5m0s;presence=on;whisper=off",
		},
		{in: "chat:*=sub", want: auth.Rule{Prefix: "chat:", Allow: ops(auth.OpSub)}},
		{in: "=sub", want: auth.Rule{Allow: ops(auth.OpSub)}, str: "*=sub"},
		{in: "*=sub,presence", want: auth.Rule{Allow: ops(auth.OpSub, auth.OpPresence)}},
		{in: "cursor:*=;history=off;whisper=on", want: auth.Rule{Prefix: "cursor:", HistorySize: auth.HistoryDisabled, Whisper: ptr(true)}},
		{in: "cursor:*=;history=0", want: auth.Rule{Prefix: "cursor:", HistorySize: auth.HistoryDisabled}, str: "cursor:*=;history=off"},
		{in: "x=", want: auth.Rule{Prefix: "x"}, str: "x*="},
		{in: "x= sub , pub ; ttl = 90s ;", want: auth.Rule{Prefix: "x", Allow: ops(auth.OpSub, auth.OpPub), HistoryTTL: 90 * time.Second}, str: "x*=sub,pub;ttl=1m30s"},
		{in: "x=;presence=false;whisper=true", want: auth.Rule{Prefix: "x", Presence: ptr(false), Whisper: ptr(true)}, str: "x*=;presence=off;whisper=on"},
		{in: "a b;c*=sub", want: auth.Rule{Prefix: "a b;c", Allow: ops(auth.OpSub)}},
		{in: "a**=sub", want: auth.Rule{Prefix: "a*", Allow: ops(auth.OpSub)}},
		{in: "internal:*=;deny=sub,pub,whisper,presence,history", want: auth.Rule{Prefix: "internal:", Deny: auth.AllOps}},
		{in: "doc:*=sub,pub;publish-hook=on", want: auth.Rule{Prefix: "doc:", Allow: ops(auth.OpSub, auth.OpPub), PublishHook: ptr(true)}},
		{
			in:   "x=;publish-hook=false;subscribe-hook=true",
			want: auth.Rule{Prefix: "x", SubscribeHook: ptr(true), PublishHook: ptr(false)},
			str:  "x*=;subscribe-hook=on;publish-hook=off",
		},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := auth.ParseRule(tt.in)
			if err != nil {
				t.Fatalf("ParseRule: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseRule = %s\nwant         %s", got, tt.want)
			}
			want := cmp.Or(tt.str, tt.in)
			if s := got.String(); s != want {
				t.Errorf("String() = %q, want %q", s, want)
			}
			again, err := auth.ParseRule(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("ParseRule(String()) = %v, %v; want %v", again, err, got)
			}
		})
	}
}

func TestParseRuleErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string // substring of the error
	}{
		{"", "PREFIX=OPS"},
		{"chat:", "PREFIX=OPS"},
		{"chat:=write", "unknown op"},
		{"chat:=sub,", "unknown op"},
		{"chat:=sub;history", "KEY=VALUE"},
		{"chat:=sub;=5", "KEY=VALUE"},
		{"chat:=sub;history=-1", "history"},
		{"chat:=sub;history=lots", "history"},
		{"chat:=sub;ttl=5", "ttl"},
		{"chat:=sub;ttl=-5m", "ttl"},
		{"chat:=sub;ttl=0s", "ttl"},
		{"chat:=sub;presence=maybe", "presence"},
		{"chat:=sub;whisper=1", "whisper"},
		{"chat:=sub;subscribe-hook=yes", "subscribe-hook"},
		{"chat:=sub;publish-hook=", "publish-hook"},
		{"chat:=sub;publish-hook=on;publish-hook=off", "twice"},
		{"chat:=sub;deny=write", "unknown op"},
		{"chat:=sub;color=red", "unknown option"},
		{"chat:=sub;history=5;history=6", "twice"},
		{"a\nb=sub", "prefix"},
		{"a\xffb=sub", "prefix"},
		{strings.Repeat("a", auth.MaxStreamLen+1) + "=sub", "prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := auth.ParseRule(tt.in)
			if !errors.Is(err, auth.ErrBadRule) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseRule = %v, %v; want ErrBadRule mentioning %q", r, err, tt.want)
			}
		})
	}
}

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		"chat:=sub,pub,history;history=100;ttl=5m;presence=on;whisper=off;deny=pub",
		"=sub", "*=", "x=;history=off", "a**=sub;ttl=1h", "doc:=;subscribe-hook=off;publish-hook=on",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := auth.ParseRule(s)
		if err != nil {
			if !errors.Is(err, auth.ErrBadRule) {
				t.Fatalf("ParseRule(%q) error %v does not wrap ErrBadRule", s, err)
			}
			return
		}
		again, err := auth.ParseRule(r.String())
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("ParseRule(%q) = %v; round trip through %q gives %v, %v", s, r, r.String(), again, err)
		}
		if _, err := auth.New(auth.Config{AllowAnonymous: true, Rules: []auth.Rule{r}}); err != nil {
			t.Fatalf("New refuses parsed rule %v: %v", r, err)
		}
	})
}

func TestStreamOptions(t *testing.T) {
	def := auth.StreamOptions{HistorySize: 100, HistoryTTL: 5 * time.Minute, Presence: true, Whisper: true}
	tests := []struct {
		name   string
		cfg    auth.Config // Secret is filled in
		rules  []string
		stream string
		want   auth.StreamOptions
	}{
		{name: "defaults", stream: "doc:1", want: def},
		{
			name: "config defaults", cfg: auth.Config{DefaultHistorySize: 10, DefaultHistoryTTL: time.Hour},
			stream: "doc:1", want: auth.StreamOptions{HistorySize: 10, HistoryTTL: time.Hour, Presence: true, Whisper: true},
		},
		{
			name: "config history off", cfg: auth.Config{DefaultHistorySize: auth.HistoryDisabled},
			stream: "doc:1", want: auth.StreamOptions{Presence: true, Whisper: true},
		},
		{
			name: "rule re-enables history", cfg: auth.Config{DefaultHistorySize: auth.HistoryDisabled},
			rules: []string{"doc:=;history=7"}, stream: "doc:1",
			want: auth.StreamOptions{HistorySize: 7, HistoryTTL: 5 * time.Minute, Presence: true, Whisper: true},
		},
		{
			name: "matching rule", rules: []string{"chat:=;history=500;ttl=1h;presence=off;whisper=off"}, stream: "chat:1",
			want: auth.StreamOptions{HistorySize: 500, HistoryTTL: time.Hour},
		},
		{name: "rule does not match", rules: []string{"chat:=;history=500;presence=off"}, stream: "cha", want: def},
		{
			name: "longest prefix wins", rules: []string{"c=;history=1", "chat:room:=;history=3", "chat:=;history=2"}, stream: "chat:room:9",
			want: auth.StreamOptions{HistorySize: 3, HistoryTTL: 5 * time.Minute, Presence: true, Whisper: true},
		},
		{
			name: "per field inheritance", rules: []string{"=;whisper=off;ttl=1m", "chat:=;history=20;presence=off"}, stream: "chat:1",
			want: auth.StreamOptions{HistorySize: 20, HistoryTTL: time.Minute, Presence: false, Whisper: false},
		},
		{
			name: "longer rule turns feature back on", rules: []string{"=;whisper=off", "cursor:=;whisper=on"}, stream: "cursor:1",
			want: def,
		},
		{
			name: "later equal prefix wins", rules: []string{"chat:=;history=1;presence=off", "chat:*=;history=2"}, stream: "chat:1",
			want: auth.StreamOptions{HistorySize: 2, HistoryTTL: 5 * time.Minute, Presence: false, Whisper: true},
		},
		{
			name: "history off by rule", rules: []string{"cursor:=;history=off;ttl=1h"}, stream: "cursor:1",
			want: auth.StreamOptions{Presence: true, Whisper: true},
		},
		{
			name: "document", rules: []string{"doc:=sub,pub;document=on;history=5"}, stream: "doc:1",
			want: auth.StreamOptions{Presence: true, Whisper: true, Document: true},
		},
		{
			name: "longer rule turns document off", rules: []string{"doc:=;document=on", "doc:scratch:=;document=off"}, stream: "doc:scratch:1",
			want: def,
		},
		{
			name: "longer rule overrides history off", rules: []string{"=;history=off", "log:=;history=1000"}, stream: "log:x",
			want: auth.StreamOptions{HistorySize: 1000, HistoryTTL: 5 * time.Minute, Presence: true, Whisper: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Secret = authtest.Secret
			for _, s := range tt.rules {
				cfg.Rules = append(cfg.Rules, mustRule(t, s))
			}
			if got := newAuth(t, cfg).StreamOptions(tt.stream); got != tt.want {
				t.Errorf("StreamOptions(%q) = %+v, want %+v", tt.stream, got, tt.want)
			}
		})
	}
}

func TestRulesCopied(t *testing.T) {
	on := true
	rules := []auth.Rule{{Prefix: "doc:", Allow: auth.OpsOf(auth.OpSub), Whisper: &on}}
	a := newAuth(t, auth.Config{AllowAnonymous: true, Rules: rules})
	rules[0].Allow = 0
	rules[0].Prefix = "x"
	on = false
	if !a.Allowed(nil, auth.OpSub, "doc:1") || !a.StreamOptions("doc:1").Whisper {
		t.Error("Authenticator follows changes to Config.Rules after New")
	}
}

// allowedCases drives TestAllowed and BenchmarkAllowed: each names the
// token's streams claim, the rules and one question.
var allowedCases = []struct {
	name    string
	streams map[string][]string // nil: anonymous identity
	rules   []string
	op      auth.Op
	stream  string
	want    bool
}{
	// Token patterns.
	{name: "exact", streams: map[string][]string{"doc:42": {"sub"}}, op: auth.OpSub, stream: "doc:42", want: true},
	{name: "exact other op", streams: map[string][]string{"doc:42": {"sub"}}, op: auth.OpPub, stream: "doc:42", want: false},
	{name: "exact is not prefix", streams: map[string][]string{"doc:42": {"sub"}}, op: auth.OpSub, stream: "doc:420", want: false},
	{name: "exact shorter", streams: map[string][]string{"doc:42": {"sub"}}, op: auth.OpSub, stream: "doc:4", want: false},
	{name: "prefix", streams: map[string][]string{"user:7:*": {"sub"}}, op: auth.OpSub, stream: "user:7:inbox", want: true},
	{name: "prefix empty rest", streams: map[string][]string{"user:7:*": {"sub"}}, op: auth.OpSub, stream: "user:7:", want: true},
	{name: "prefix mismatch", streams: map[string][]string{"user:7:*": {"sub"}}, op: auth.OpSub, stream: "user:70:inbox", want: false},
	{name: "prefix without rest", streams: map[string][]string{"user:7:*": {"sub"}}, op: auth.OpSub, stream: "user:7", want: false},
	{name: "lone star", streams: map[string][]string{"*": {"history"}}, op: auth.OpHistory, stream: "anything at all", want: true},
	{name: "inner star is literal", streams: map[string][]string{"a*b": {"sub"}}, op: auth.OpSub, stream: "axb", want: false},
	{name: "inner star exact", streams: map[string][]string{"a*b": {"sub"}}, op: auth.OpSub, stream: "a*b", want: true},
	{name: "grants union", streams: map[string][]string{"*": {"sub"}, "doc:1": {"pub"}}, op: auth.OpPub, stream: "doc:1", want: true},
	{name: "grants union other", streams: map[string][]string{"*": {"sub"}, "doc:1": {"pub"}}, op: auth.OpSub, stream: "doc:1", want: true},
	{name: "empty ops", streams: map[string][]string{"*": {}}, op: auth.OpSub, stream: "doc:1", want: false},
	{name: "nothing matches", streams: map[string][]string{"doc:1": {"sub"}}, op: auth.OpSub, stream: "doc:2", want: false},
	{name: "no grants", streams: map[string][]string{}, op: auth.OpSub, stream: "doc:1", want: false},
	{name: "anonymous no rules", op: auth.OpSub, stream: "doc:1", want: false},
	{name: "invalid op", streams: map[string][]string{"*": {"sub", "pub", "whisper", "presence", "history"}}, op: 0, stream: "doc:1", want: false},
	{name: "invalid op high", streams: map[string][]string{"*": {"sub", "pub", "whisper", "presence", "history"}}, op: 7, stream: "doc:1", want: false},

	// Rules grant on their own.
	{name: "rule grants anonymous", rules: []string{"public:=sub,history"}, op: auth.OpHistory, stream: "public:news", want: true},
	{name: "rule grants other prefix", rules: []string{"public:=sub,history"}, op: auth.OpSub, stream: "private:news", want: false},
	{name: "rule grants everything", rules: []string{"=sub"}, op: auth.OpSub, stream: "x", want: true},
	{name: "rule and token combine", streams: map[string][]string{"doc:1": {"pub"}}, rules: []string{"doc:=sub"}, op: auth.OpSub, stream: "doc:1", want: true},
	{name: "rule and token combine token op", streams: map[string][]string{"doc:1": {"pub"}}, rules: []string{"doc:=sub"}, op: auth.OpPub, stream: "doc:1", want: true},
	{name: "rule does not grant other op", streams: map[string][]string{"doc:1": {"pub"}}, rules: []string{"doc:=sub"}, op: auth.OpHistory, stream: "doc:1", want: false},

	// Denial wins.
	{name: "rule denies token grant", streams: map[string][]string{"*": {"pub"}}, rules: []string{"ro:=;deny=pub"}, op: auth.OpPub, stream: "ro:feed", want: false},
	{name: "deny elsewhere", streams: map[string][]string{"*": {"pub"}}, rules: []string{"ro:=;deny=pub"}, op: auth.OpPub, stream: "rw:feed", want: true},
	{name: "deny in shorter rule beats longer allow", rules: []string{"=;deny=pub", "chat:=sub,pub"}, op: auth.OpPub, stream: "chat:1", want: false},
	{name: "deny in longer rule beats shorter allow", rules: []string{"=pub", "chat:=;deny=pub"}, op: auth.OpPub, stream: "chat:1", want: false},
	{name: "deny in same rule", rules: []string{"chat:=sub,pub;deny=pub"}, op: auth.OpPub, stream: "chat:1", want: false},
	{name: "deny other op only", rules: []string{"chat:=sub,pub;deny=pub"}, op: auth.OpSub, stream: "chat:1", want: true},
	{name: "deny all", streams: map[string][]string{"*": {"sub"}}, rules: []string{"internal:=;deny=sub,pub,whisper,presence,history"}, op: auth.OpSub, stream: "internal:x", want: false},

	// Feature switches.
	{name: "whisper off", streams: map[string][]string{"*": {"whisper"}}, rules: []string{"=;whisper=off"}, op: auth.OpWhisper, stream: "doc:1", want: false},
	{name: "whisper back on", streams: map[string][]string{"*": {"whisper"}}, rules: []string{"=;whisper=off", "cursor:=;whisper=on"}, op: auth.OpWhisper, stream: "cursor:1", want: true},
	{name: "whisper on does not grant", rules: []string{"cursor:=;whisper=on"}, op: auth.OpWhisper, stream: "cursor:1", want: false},
	{name: "whisper off other op", streams: map[string][]string{"*": {"sub"}}, rules: []string{"=;whisper=off"}, op: auth.OpSub, stream: "doc:1", want: true},
	{name: "presence off", streams: map[string][]string{"*": {"presence"}}, rules: []string{"big:=;presence=off"}, op: auth.OpPresence, stream: "big:1", want: false},
	{name: "presence off elsewhere", streams: map[string][]string{"*": {"presence"}}, rules: []string{"big:=;presence=off"}, op: auth.OpPresence, stream: "small:1", want: true},
	{name: "deny beats switch on", streams: map[string][]string{"*": {"whisper"}}, rules: []string{"=;deny=whisper", "cursor:=;whisper=on"}, op: auth.OpWhisper, stream: "cursor:1", want: false},
}

func newAllowedCase(t testing.TB, streams map[string][]string, rules []string) (*auth.Authenticator, *auth.Identity) {
	t.Helper()
	cfg := auth.Config{Secret: authtest.Secret, AllowAnonymous: true}
	for _, s := range rules {
		cfg.Rules = append(cfg.Rules, mustRule(t, s))
	}
	a := newAuth(t, cfg)
	token := ""
	if streams != nil {
		token = authtest.SignHS256(authtest.Secret, map[string]any{"sub": "alice", "streams": streams})
	}
	id, err := a.Verify(token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return a, id
}

func TestAllowed(t *testing.T) {
	for _, tt := range allowedCases {
		t.Run(tt.name, func(t *testing.T) {
			a, id := newAllowedCase(t, tt.streams, tt.rules)
			if got := a.Allowed(id, tt.op, tt.stream); got != tt.want {
				t.Errorf("Allowed(%v, %q) = %v, want %v", tt.op, tt.stream, got, tt.want)
			}
			if tt.streams == nil {
				// An anonymous identity has no grants, like a nil one.
				if got := a.Allowed(nil, tt.op, tt.stream); got != tt.want {
					t.Errorf("Allowed(nil, %v, %q) = %v, want %v", tt.op, tt.stream, got, tt.want)
				}
			}
			if n := testing.AllocsPerRun(100, func() { a.Allowed(id, tt.op, tt.stream) }); n != 0 {
				t.Errorf("Allowed allocates %v times", n)
			}
		})
	}
}

func BenchmarkAllowed(b *testing.B) {
	for _, tt := range allowedCases {
		b.Run(tt.name, func(b *testing.B) {
			a, id := newAllowedCase(b, tt.streams, tt.rules)
			b.ReportAllocs()
			for b.Loop() {
				a.Allowed(id, tt.op, tt.stream)
			}
		})
	}
}

// BenchmarkAllowed_Realistic asks about a token with a handful of grants on a
// server with a handful of rules, the shape of a typical deployment.
func BenchmarkAllowed_Realistic(b *testing.B) {
	a, id := newAllowedCase(b,
		map[string][]string{
			"doc:42":      {"sub", "pub", "whisper", "presence", "history"},
			"doc:43":      {"sub", "history"},
			"user:1234:*": {"sub"},
			"team:9:*":    {"sub", "presence"},
		},
		[]string{"=;history=100", "public:=sub,history", "cursor:=;history=off;whisper=on", "internal:=;deny=sub,pub,whisper,presence,history", "doc:=;ttl=10m"},
	)
	b.ReportAllocs()
	for b.Loop() {
		if !a.Allowed(id, auth.OpPresence, "team:9:standup") {
			b.Fatal("denied")
		}
	}
}
