package redis

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/huddle-rt/huddle/internal/redistest"
	"github.com/huddle-rt/huddle/presence"
	"github.com/huddle-rt/huddle/presence/presencetest"
	"github.com/huddle-rt/huddle/protocol"
)

func TestStore_Conformance(t *testing.T) {
	c := redistest.Client(t, redistest.URL(t))
	presencetest.Run(t, func(t *testing.T) presence.Store {
		return New(c, Config{Prefix: redistest.Prefix(t, c)})
	})
}

// clock is a settable time source for a Store.
type clock struct{ ms atomic.Int64 }

func (c *clock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// newStore returns a Store with a key prefix of its own reading time from
// a clock the test sets, and its client for looking at the keys directly.
func newStore(t *testing.T) (*Store, *clock, rueidis.Client) {
	t.Helper()
	c := redistest.Client(t, redistest.URL(t))
	s := New(c, Config{Prefix: redistest.Prefix(t, c)})
	clk := new(clock)
	clk.ms.Store(time.Now().UnixMilli())
	s.now = clk.now
	return s, clk, c
}

func member(user, client string) protocol.Member {
	return protocol.Member{User: user, Client: client, Info: protocol.MustRaw(map[string]any{"name": user})}
}

func join(t *testing.T, s *Store, stream string, m protocol.Member, ttl time.Duration) {
	t.Helper()
	if _, err := s.Join(t.Context(), stream, m, ttl, 0); err != nil {
		t.Fatalf("Join %s/%s: %v", stream, m.Client, err)
	}
}

func memberClients(t *testing.T, s *Store, stream string) []string {
	t.Helper()
	ms, err := s.Members(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Client)
	}
	sort.Strings(out)
	return out
}

func goneNames(gone []presence.Gone) []string {
	var out []string
	for _, g := range gone {
		out = append(out, g.Stream+"/"+g.User+"/"+g.Client)
	}
	sort.Strings(out)
	return out
}

func expire(t *testing.T, s *Store, now time.Time) []string {
	t.Helper()
	gone, err := s.Expire(t.Context(), now)
	if err != nil {
		t.Fatal(err)
	}
	return goneNames(gone)
}

func TestStore_KeyNames(t *testing.T) {
	s := New(nil, Config{})
	if got, want := s.keys("doc:1"), []string{"huddle:presence:{doc:1}", "huddle:presence-expiry:{doc:1}"}; !slices.Equal(got, want) {
		t.Errorf("keys = %q, want %q", got, want)
	}
	if got, want := New(nil, Config{Prefix: "app:"}).indexKey(), "app:presence-streams"; got != want {
		t.Errorf("indexKey = %q, want %q", got, want)
	}
}

// TestStore_RoundTrip checks that members come back byte for byte.
func TestStore_RoundTrip(t *testing.T) {
	s, _, _ := newStore(t)
	in := []protocol.Member{
		{User: "u1", Client: "c1", Info: protocol.MustRaw(map[string]any{"name": "Ünï", "n": 1.5}), State: protocol.MustRaw(map[string]any{"bin": []byte{0, 0xff}})},
		{User: "", Client: "c2"},
		{User: "u3", Client: "c:3}{", State: protocol.MustRaw(map[string]any{})},
	}
	for _, m := range in {
		join(t, s, "rt", m, time.Minute)
	}
	out, err := s.Members(t.Context(), "rt")
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Client < out[j].Client })
	if len(out) != len(in) {
		t.Fatalf("Members = %+v, want %+v", out, in)
	}
	for i := range in {
		if fmt.Sprint(out[i]) != fmt.Sprint(in[i]) {
			t.Errorf("member %d = %+v, want %+v", i, out[i], in[i])
		}
	}
	m, ok, err := s.Leave(t.Context(), "rt", "c1")
	if err != nil || !ok || fmt.Sprint(m) != fmt.Sprint(in[0]) {
		t.Errorf("Leave = %+v, %v, %v; want %+v", m, ok, err, in[0])
	}
}

// TestStore_Expiry checks expiry on the store's clock: Members hides
// expired members at once, Join's max counts only live ones, and Expire
// reports each expired member once, including after Touch shortened a
// life or when a stream's earliest member is gone and the next is due
// later.
func TestStore_Expiry(t *testing.T) {
	s, clk, _ := newStore(t)
	ctx := t.Context()
	join(t, s, "a", member("u1", "short"), time.Second)
	join(t, s, "a", member("u2", "long"), 10*time.Second)
	join(t, s, "a", member("u3", "shortened"), time.Hour)
	join(t, s, "b", member("u4", "other"), 5*time.Second)
	if missing, err := s.Touch(ctx, "a", []string{"shortened", "nobody"}, 2*time.Second); err != nil || !slices.Equal(missing, []string{"nobody"}) {
		t.Fatalf("touch: missing %v, %v; want [nobody]", missing, err)
	}

	clk.advance(3 * time.Second)
	if got := memberClients(t, s, "a"); !slices.Equal(got, []string{"long"}) {
		t.Errorf("Members after 3s = %v, want [long]", got)
	}
	if _, err := s.Join(ctx, "a", member("u5", "new"), time.Minute, 2); err != nil {
		t.Errorf("Join at max with expired members: %v, want them not counted", err)
	}
	if _, err := s.Join(ctx, "a", member("u6", "over"), time.Minute, 2); !errors.Is(err, presence.ErrFull) {
		t.Errorf("Join over max: %v, want ErrFull", err)
	}

	if got, want := expire(t, s, clk.now()), []string{"a/u1/short", "a/u3/shortened"}; !slices.Equal(got, want) {
		t.Errorf("Expire after 3s = %v, want %v", got, want)
	}
	if got := expire(t, s, clk.now()); got != nil {
		t.Errorf("second Expire after 3s = %v, want nothing", got)
	}
	clk.advance(3 * time.Second)
	if got, want := expire(t, s, clk.now()), []string{"b/u4/other"}; !slices.Equal(got, want) {
		t.Errorf("Expire after 6s = %v, want %v", got, want)
	}
	clk.advance(5 * time.Second)
	if got, want := expire(t, s, clk.now()), []string{"a/u2/long"}; !slices.Equal(got, want) {
		t.Errorf("Expire after 11s = %v, want %v", got, want)
	}
	if got := memberClients(t, s, "a"); !slices.Equal(got, []string{"new"}) {
		t.Errorf("Members after 11s = %v, want [new]", got)
	}
}

// TestStore_ExpireNodes has two stores, as two nodes, call Expire at once
// from several goroutines each: every expired member is reported by
// exactly one call.
func TestStore_ExpireNodes(t *testing.T) {
	const (
		streams  = 20
		members  = 50
		callers  = 4 // per node
		lifetime = time.Minute
	)
	url := redistest.URL(t)
	c1, c2 := redistest.Client(t, url), redistest.Client(t, url)
	prefix := redistest.Prefix(t, c1)
	nodes := []*Store{New(c1, Config{Prefix: prefix}), New(c2, Config{Prefix: prefix})}

	want := make(map[string]bool)
	for i := range streams {
		stream := fmt.Sprint("s", i)
		for j := range members {
			m := member(fmt.Sprint("u", j), fmt.Sprint("c", j))
			join(t, nodes[(i+j)%2], stream, m, lifetime)
			want[stream+"/"+m.User+"/"+m.Client] = true
		}
	}

	later := time.Now().Add(2 * lifetime)
	var (
		mu   sync.Mutex
		seen = make(map[string]int)
		wg   sync.WaitGroup
	)
	start := make(chan struct{})
	for _, s := range nodes {
		for range callers {
			wg.Go(func() {
				<-start
				for round := 0; ; round++ {
					if round > streams*members {
						t.Error("Expire keeps reporting members")
						return
					}
					gone, err := s.Expire(t.Context(), later)
					if err != nil {
						t.Errorf("Expire: %v", err)
						return
					}
					if len(gone) == 0 {
						return
					}
					mu.Lock()
					for _, name := range goneNames(gone) {
						seen[name]++
					}
					mu.Unlock()
				}
			})
		}
	}
	close(start)
	wg.Wait()
	for name, n := range seen {
		if n != 1 {
			t.Errorf("%s reported %d times", name, n)
		}
		if !want[name] {
			t.Errorf("%s reported but never joined", name)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d members reported, want %d", len(seen), len(want))
	}
	if n, _ := c1.Do(t.Context(), c1.B().Zcard().Key(nodes[0].indexKey()).Build()).AsInt64(); n != 0 {
		t.Errorf("index holds %d streams after everyone expired, want 0", n)
	}
}

// TestStore_ConcurrentUpdates patches one member from many goroutines of
// two stores, each its own key: the compare-and-set loses none.
func TestStore_ConcurrentUpdates(t *testing.T) {
	const (
		writers = 8
		each    = 15
	)
	url := redistest.URL(t)
	c1, c2 := redistest.Client(t, url), redistest.Client(t, url)
	prefix := redistest.Prefix(t, c1)
	nodes := []*Store{New(c1, Config{Prefix: prefix}), New(c2, Config{Prefix: prefix})}
	join(t, nodes[0], "s", member("u", "c"), time.Minute)

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			s := nodes[w%2]
			for i := range each {
				patch := protocol.MustRaw(map[string]any{fmt.Sprint("w", w): i})
				if _, err := s.Update(t.Context(), "s", "c", patch, time.Minute, 0); err != nil {
					t.Errorf("Update: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	ms, err := nodes[1].Members(t.Context(), "s")
	if err != nil || len(ms) != 1 {
		t.Fatalf("Members = %+v, %v", ms, err)
	}
	var state map[string]int
	if err := msgpack.Unmarshal(ms[0].State, &state); err != nil {
		t.Fatal(err)
	}
	for w := range writers {
		if got := state[fmt.Sprint("w", w)]; got != each-1 {
			t.Errorf("state[w%d] = %d, want %d (state %v)", w, got, each-1, state)
		}
	}
}

// TestStore_UpdateErrors checks that refused updates change nothing.
func TestStore_UpdateErrors(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := t.Context()
	m := member("u", "c")
	m.State = protocol.MustRaw(map[string]any{"a": 1})
	join(t, s, "s", m, time.Minute)
	tests := []struct {
		name     string
		client   string
		patch    protocol.Raw
		maxState int
		want     error
	}{
		{"not a member", "nobody", protocol.MustRaw(map[string]any{"a": 2}), 0, presence.ErrNotMember},
		{"patch not a map", "c", protocol.MustRaw([]int{1}), 0, presence.ErrNotMap},
		{"too large", "c", protocol.MustRaw(map[string]any{"b": string(make([]byte, 100))}), 64, presence.ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Update(ctx, "s", tc.client, tc.patch, time.Minute, tc.maxState); !errors.Is(err, tc.want) {
				t.Fatalf("Update: %v, want %v", err, tc.want)
			}
			ms, err := s.Members(ctx, "s")
			if err != nil || len(ms) != 1 || string(ms[0].State) != string(m.State) {
				t.Errorf("Members after refused update = %+v, %v; want the state unchanged", ms, err)
			}
		})
	}
	// An update that empties the state leaves an empty map, as in memory.
	state, err := s.Update(ctx, "s", "c", protocol.MustRaw(map[string]any{"a": nil}), time.Minute, 0)
	if err != nil || string(state) != string(protocol.MustRaw(map[string]any{})) {
		t.Errorf("Update deleting the last key = %x, %v; want an empty map", state, err)
	}
}

// TestStore_Keys checks that a stream's keys expire a while after their
// members, and vanish with the last member.
func TestStore_Keys(t *testing.T) {
	s, _, c := newStore(t)
	ctx := t.Context()
	join(t, s, "s", member("u", "c"), 30*time.Second)
	for _, k := range s.keys("s") {
		ms, err := c.Do(ctx, c.B().Pttl().Key(k).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := time.Duration(ms)*time.Millisecond, 30*time.Second+keyGrace; got > want || got < want-5*time.Second {
			t.Errorf("PTTL %s = %v, want about %v", k, got, want)
		}
	}
	if _, ok, err := s.Leave(ctx, "s", "c"); !ok || err != nil {
		t.Fatalf("Leave: %v %v", ok, err)
	}
	for _, k := range s.keys("s") {
		if n, _ := c.Do(ctx, c.B().Exists().Key(k).Build()).AsInt64(); n != 0 {
			t.Errorf("%s exists after the last member left", k)
		}
	}
}
