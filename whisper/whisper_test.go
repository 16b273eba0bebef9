package whisper

import (
	"fmt"
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
	got := c.Snapshot("s", "", 0)
	if len(got) != 2 {
		t.Fatalf("snapshot has %d, want 2", len(got))
	}
	for _, x := range got {
		if x.From.Client == "a" && string(x.Data) != string(protocol.MustRaw(2)) {
			t.Fatalf("a's cursor is %x, want the newest", x.Data)
		}
	}
	if got := c.Snapshot("s", "b", 0); len(got) != 1 || got[0].From.Client != "a" {
		t.Fatalf("snapshot except b = %+v", got)
	}
	// Over MaxEvents the oldest event goes.
	c.Put(w("s", "a", "sel", 5))
	c.Put(w("s", "a", "typing", 6))
	evs := map[string]bool{}
	for _, x := range c.Snapshot("s", "b", 0) {
		evs[x.Ev] = true
	}
	if evs["cursor"] || !evs["sel"] || !evs["typing"] {
		t.Fatalf("events kept %v, want sel and typing", evs)
	}
	c.Drop("s", "a")
	c.Drop("s", "b")
	if got := c.Snapshot("s", "", 0); len(got) != 0 {
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

// TestCacheNodeBound: the cache never holds more than MaxCacheBytes; a
// whisper that does not fit is not cached and takes its sender's older
// value of the same event with it, and dropping a sender gives its bytes
// back.
func TestCacheNodeBound(t *testing.T) {
	big := func(stream, sender, ev string) protocol.Whisper {
		return protocol.Whisper{S: stream, Ev: ev, Data: protocol.MustRaw(string(make([]byte, 4000))), From: protocol.ClientInfo{User: "u", Client: sender}}
	}
	c := NewCache(Config{MaxCacheBytes: 100 << 10})
	stored := 0
	for i := range 1000 {
		if c.Put(big(fmt.Sprintf("s%d", i%50), fmt.Sprintf("c%d", i), "cursor")) {
			stored++
		}
		if c.Bytes() > 100<<10 {
			t.Fatalf("cache at %d bytes after %d puts", c.Bytes(), i+1)
		}
	}
	if stored == 0 || stored >= 1000 || c.Len() != stored {
		t.Fatalf("stored %d of 1000, %d cached", stored, c.Len())
	}
	// A full cache refuses a newer value for a cached key and forgets the
	// old one rather than keep it stale.
	c2 := NewCache(Config{MaxCacheBytes: 10 << 10})
	if !c2.Put(big("s", "a", "cursor")) || !c2.Put(big("s", "b", "cursor")) {
		t.Fatal("two 4 KB whispers fit in 10 KiB")
	}
	bigger := big("s", "a", "cursor")
	bigger.Data = protocol.MustRaw(string(make([]byte, 9000)))
	if c2.Put(bigger) {
		t.Fatal("a 9 KB whisper fit beside a 4 KB one in 10 KiB")
	}
	if got := c2.Snapshot("s", "", 0); len(got) != 1 || got[0].From.Client != "b" {
		t.Fatalf("snapshot %+v, want b's only", got)
	}
	c2.Drop("s", "b")
	if c2.Bytes() != 0 {
		t.Fatalf("%d bytes left after dropping every sender", c2.Bytes())
	}
	// Snapshot bounds the data it returns, whole senders at a time.
	c3 := NewCache(Config{})
	for i := range 10 {
		c3.Put(big("s", fmt.Sprintf("c%d", i), "cursor"))
		c3.Put(big("s", fmt.Sprintf("c%d", i), "sel"))
	}
	got := c3.Snapshot("s", "", 20000)
	per := map[string]int{}
	for _, w := range got {
		per[w.From.Client]++
	}
	if len(got) == 0 || len(got) > 4 || len(per)*2 != len(got) {
		t.Fatalf("bounded snapshot has %d whispers of %d senders", len(got), len(per))
	}
}
