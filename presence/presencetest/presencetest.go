// Package presencetest is the conformance suite every presence.Store runs.
package presencetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/presence"
	"github.com/huddle-rt/huddle/protocol"
)

// Run runs the suite against stores made by newStore. Stream names are
// random, so a shared backend may be reused.
func Run(t *testing.T, newStore func(t *testing.T) presence.Store) {
	ctx := context.Background()
	name := func() string { return fmt.Sprintf("pt-%x", rand.Uint64()) }
	member := func(user, client string, state any) protocol.Member {
		m := protocol.Member{User: user, Client: client, Info: protocol.MustRaw(map[string]any{"name": user})}
		if state != nil {
			m.State = protocol.MustRaw(state)
		}
		return m
	}
	clients := func(ms []protocol.Member) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Client)
		}
		sort.Strings(out)
		return out
	}

	t.Run("JoinMembersLeave", func(t *testing.T) {
		s, st := newStore(t), name()
		created, err := s.Join(ctx, st, member("u1", "c1", map[string]any{"x": 1}), time.Minute, 0)
		if err != nil || !created {
			t.Fatalf("join: %v %v", created, err)
		}
		if created, _ := s.Join(ctx, st, member("u1", "c1", map[string]any{"x": 2}), time.Minute, 0); created {
			t.Fatal("rejoin reported created")
		}
		_, _ = s.Join(ctx, st, member("u1", "c2", nil), time.Minute, 0) // a second tab of one user
		ms, err := s.Members(ctx, st)
		if err != nil || fmt.Sprint(clients(ms)) != "[c1 c2]" {
			t.Fatalf("members %v %v", clients(ms), err)
		}
		for _, m := range ms {
			if m.Client == "c1" && string(m.State) != string(protocol.MustRaw(map[string]any{"x": 2})) {
				t.Fatalf("rejoin did not replace state: %x", m.State)
			}
		}
		m, ok, err := s.Leave(ctx, st, "c1")
		if err != nil || !ok || m.User != "u1" {
			t.Fatalf("leave %+v %v %v", m, ok, err)
		}
		if _, ok, _ := s.Leave(ctx, st, "c1"); ok {
			t.Fatal("second leave found the member")
		}
		ms, _ = s.Members(ctx, st)
		if fmt.Sprint(clients(ms)) != "[c2]" {
			t.Fatalf("after leave %v", clients(ms))
		}
	})

	t.Run("UpdatePatches", func(t *testing.T) {
		s, st := newStore(t), name()
		_, _ = s.Join(ctx, st, member("u", "c", map[string]any{"a": 1, "b": 2}), time.Minute, 0)
		state, err := s.Update(ctx, st, "c", protocol.MustRaw(map[string]any{"b": nil, "c": 3}), time.Minute, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := protocol.MsgpackToJSON(nil, state)
		if string(got) != `{"a":1,"c":3}` && string(got) != `{"c":3,"a":1}` {
			t.Fatalf("state %s", got)
		}
		if _, err := s.Update(ctx, st, "nobody", protocol.MustRaw(map[string]any{}), time.Minute, 0); !errors.Is(err, presence.ErrNotMember) {
			t.Fatalf("update of non-member: %v", err)
		}
		big := protocol.MustRaw(map[string]any{"big": string(make([]byte, 100))})
		if _, err := s.Update(ctx, st, "c", big, time.Minute, 64); !errors.Is(err, presence.ErrTooLarge) {
			t.Fatalf("update over maxState: %v, want ErrTooLarge", err)
		}
		ms, _ := s.Members(ctx, st)
		if len(ms) != 1 || len(ms[0].State) > 64 {
			t.Fatalf("a refused update changed the state: %+v", ms)
		}
	})

	t.Run("MaxMembers", func(t *testing.T) {
		s, st := newStore(t), name()
		for i := 0; i < 3; i++ {
			if _, err := s.Join(ctx, st, member("u", fmt.Sprint(i), nil), time.Minute, 3); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Join(ctx, st, member("u", "x", nil), time.Minute, 3); !errors.Is(err, presence.ErrFull) {
			t.Fatalf("4th join: %v, want ErrFull", err)
		}
		if _, err := s.Join(ctx, st, member("u", "1", nil), time.Minute, 3); err != nil {
			t.Fatalf("rejoin at the cap: %v", err)
		}
	})

	t.Run("TTLAndTouch", func(t *testing.T) {
		s, st := newStore(t), name()
		ttl := 300 * time.Millisecond
		_, _ = s.Join(ctx, st, member("u", "kept", nil), ttl, 0)
		_, _ = s.Join(ctx, st, member("v", "dropped", nil), ttl, 0)
		deadline := time.Now().Add(ttl + 700*time.Millisecond)
		var gone []presence.Gone
		for time.Now().Before(deadline) {
			if missing, err := s.Touch(ctx, st, []string{"kept", "never"}, ttl); err != nil || len(missing) != 1 || missing[0] != "never" {
				t.Fatalf("touch: missing %q, %v; want [never]", missing, err)
			}
			g, err := s.Expire(ctx, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range g {
				if x.Stream == st {
					gone = append(gone, x)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(gone) != 1 || gone[0].Client != "dropped" || gone[0].User != "v" {
			t.Fatalf("expired %+v, want only the untouched member", gone)
		}
		ms, _ := s.Members(ctx, st)
		if fmt.Sprint(clients(ms)) != "[kept]" {
			t.Fatalf("members %v", clients(ms))
		}
	})

	t.Run("ConcurrentJoins", func(t *testing.T) {
		s, st := newStore(t), name()
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 100; i++ {
					_, _ = s.Join(ctx, st, member("u", fmt.Sprintf("%d-%d", g, i), nil), time.Minute, 0)
				}
			}()
		}
		wg.Wait()
		ms, _ := s.Members(ctx, st)
		if len(ms) != 800 {
			t.Fatalf("%d members, want 800", len(ms))
		}
	})
}
