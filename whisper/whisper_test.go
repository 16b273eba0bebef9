package whisper

import (
	"testing"
	"time"

	"github.com/huddle-rt/huddle/protocol"
)

func TestLimiter(t *testing.T) {
	cfg := Config{Rate: 10, Burst: 5}.WithDefaults()
	var l Limiter
	now := time.Unix(100, 0).UnixNano()
	allowed, warns := 0, 0
	for i := 0; i < 20; i++ {
		ok, warn := l.Allow(now, &cfg)
		if ok {
			allowed++
		}
		if warn {
			warns++
		}
	}
	if allowed != 5 || warns != 1 {
		t.Fatalf("burst: allowed %d warned %d, want 5 and 1", allowed, warns)
	}
	// 500ms later: 5 more tokens, and a new warning only after a second.
	now += int64(500 * time.Millisecond)
	allowed, warns = 0, 0
	for i := 0; i < 10; i++ {
		ok, warn := l.Allow(now, &cfg)
		if ok {
			allowed++
		}
		if warn {
			warns++
		}
	}
	if allowed != 5 || warns != 0 {
		t.Fatalf("refill: allowed %d warned %d, want 5 and 0", allowed, warns)
	}
	now += int64(600 * time.Millisecond)
	for i := 0; i < 20; i++ {
		l.Allow(now, &cfg)
	}
	if _, warn := l.Allow(now, &cfg); warn {
		t.Fatal("warned twice within a second")
	}
}

func TestKey(t *testing.T) {
	a := Key("s", "c1", "cursor")
	if a == 0 || a != Key("s", "c1", "cursor") {
		t.Fatal("key not stable or zero")
	}
	for _, k := range []uint64{Key("s", "c2", "cursor"), Key("s", "c1", "sel"), Key("t", "c1", "cursor"), Key("s", "c1c", "ursor")} {
		if k == a {
			t.Fatal("distinct triples share a key")
		}
	}
}

func w(stream, client, ev string, v any) protocol.Whisper {
	return protocol.Whisper{S: stream, Ev: ev, Data: protocol.MustRaw(v), From: protocol.ClientInfo{User: "u-" + client, Client: client}}
}

func TestCache(t *testing.T) {
	c := NewCache(Config{MaxEvents: 2})
	c.Put(w("s", "a", "cursor", 1))
	c.Put(w("s", "a", "cursor", 2)) // replaces
	c.Put(w("s", "b", "cursor", 3))
	c.Put(w("t", "a", "cursor", 4))
	got := c.Snapshot("s", "")
	if len(got) != 2 {
		t.Fatalf("snapshot has %d, want 2", len(got))
	}
	for _, x := range got {
		if x.From.Client == "a" && string(x.Data) != string(protocol.MustRaw(2)) {
			t.Fatalf("a's cursor is %x, want the newest", x.Data)
		}
	}
	if got := c.Snapshot("s", "b"); len(got) != 1 || got[0].From.Client != "a" {
		t.Fatalf("snapshot except b = %+v", got)
	}
	// Over MaxEvents the oldest event goes.
	c.Put(w("s", "a", "sel", 5))
	c.Put(w("s", "a", "typing", 6))
	evs := map[string]bool{}
	for _, x := range c.Snapshot("s", "b") {
		evs[x.Ev] = true
	}
	if evs["cursor"] || !evs["sel"] || !evs["typing"] {
		t.Fatalf("events kept %v, want sel and typing", evs)
	}
	c.Drop("s", "a")
	c.Drop("s", "b")
	if got := c.Snapshot("s", ""); len(got) != 0 {
		t.Fatalf("after drop: %+v", got)
	}
	if c.Len() != 1 {
		t.Fatalf("len %d, want 1 (stream t)", c.Len())
	}
}

func BenchmarkLimiter(b *testing.B) {
	cfg := Config{}.WithDefaults()
	var l Limiter
	now := time.Now().UnixNano()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		l.Allow(now+int64(i)*int64(20*time.Millisecond), &cfg)
	}
}
