package presence_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/presence"
	"github.com/huddle-rt/huddle/protocol"
)

// gateStream is the stream whose diff parks the tracker inside a flush.
const gateStream = "gate"

// emitted is one diff the tracker handed to its Emit.
type emitted struct {
	stream string
	diff   *protocol.Presence
}

// rig is a Tracker over a MemoryStore whose diffs are captured. Its gate
// makes "within one tick" exact: the tracker is held inside the flush that
// emits the gate stream, so every change made until the release falls into
// the next tick, however slow the machine.
type rig struct {
	tr      *presence.Tracker
	store   *presence.MemoryStore
	diffs   chan emitted
	held    chan struct{}
	resume  chan struct{}
	closing chan struct{}
	gates   int
}

func newRig(t *testing.T, cfg presence.Config) *rig {
	t.Helper()
	if cfg.Tick == 0 {
		cfg.Tick = 10 * time.Millisecond
	}
	r := &rig{
		store:   presence.NewMemoryStore(),
		diffs:   make(chan emitted, 1024),
		held:    make(chan struct{}),
		resume:  make(chan struct{}),
		closing: make(chan struct{}),
	}
	r.tr = presence.NewTracker(cfg, r.store, r.emit)
	t.Cleanup(func() {
		close(r.closing) // a held flush must not block Close
		r.tr.Close()
	})
	return r
}

func (r *rig) emit(stream string, d *protocol.Presence) {
	if stream == gateStream {
		select {
		case r.held <- struct{}{}:
		case <-r.closing:
			return
		}
		select {
		case <-r.resume:
		case <-r.closing:
		}
		return
	}
	select {
	case r.diffs <- emitted{stream, d}:
	case <-r.closing:
	}
}

// inOneTick runs fn while the tracker is parked in a flush: every change fn
// makes is emitted by the same, next flush.
func (r *rig) inOneTick(t *testing.T, fn func()) {
	t.Helper()
	r.gates++
	r.join(t, gateStream, "gate", "g"+strconv.Itoa(r.gates), nil)
	select {
	case <-r.held:
	case <-time.After(5 * time.Second):
		t.Fatal("the tracker did not flush within 5s")
	}
	fn()
	r.resume <- struct{}{}
}

// next returns the next diff of stream, failing after 5s.
func (r *rig) next(t *testing.T, stream string) *protocol.Presence {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-r.diffs:
			if e.stream == stream {
				if e.diff.S != stream {
					t.Fatalf("diff for %q carries s=%q", stream, e.diff.S)
				}
				return e.diff
			}
		case <-deadline:
			t.Fatalf("no diff for %q within 5s", stream)
			return nil
		}
	}
}

// none fails if stream gets a diff within d.
func (r *rig) none(t *testing.T, stream string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case e := <-r.diffs:
			if e.stream == stream {
				t.Fatalf("unexpected diff for %q: %s", stream, diffString(e.diff))
			}
		case <-deadline:
			return
		}
	}
}

func (r *rig) join(t *testing.T, stream, user, client string, state any) {
	t.Helper()
	m := protocol.Member{User: user, Client: client, Info: protocol.MustRaw(map[string]any{"name": user})}
	if state != nil {
		m.State = protocol.MustRaw(state)
	}
	if err := r.tr.Join(context.Background(), stream, m); err != nil {
		t.Fatalf("join %s/%s: %v", stream, client, err)
	}
}

func (r *rig) update(t *testing.T, stream, user, client string, patch any) {
	t.Helper()
	err := r.tr.Update(context.Background(), stream, protocol.ClientInfo{User: user, Client: client}, protocol.MustRaw(patch))
	if err != nil {
		t.Fatalf("update %s/%s: %v", stream, client, err)
	}
}

func (r *rig) leave(t *testing.T, stream, client string) {
	t.Helper()
	if err := r.tr.Leave(context.Background(), stream, client); err != nil {
		t.Fatalf("leave %s/%s: %v", stream, client, err)
	}
}

// joined makes client a known member of stream: its join is already out.
func (r *rig) joined(t *testing.T, stream, user, client string, state any) {
	t.Helper()
	r.join(t, stream, user, client, state)
	if d := r.next(t, stream); len(d.Joins) != 1 || d.Joins[0].Client != client {
		t.Fatalf("join of %s: %s", client, diffString(d))
	}
}

// canon renders a msgpack value as JSON with sorted keys ("" when absent).
func canon(t testing.TB, raw protocol.Raw) string {
	t.Helper()
	if len(raw) == 0 {
		return ""
	}
	j, err := protocol.MsgpackToJSON(nil, raw)
	if err != nil {
		t.Fatalf("state %x: %v", []byte(raw), err)
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func diffString(d *protocol.Presence) string {
	b, _ := json.Marshal(d)
	return string(b)
}

// wantDiff checks a diff's entries by client: joins with their state,
// leaves, and updates with their patch (JSON, sorted keys).
func wantDiff(t *testing.T, d *protocol.Presence, joins map[string]string, leaves []string, updates map[string]string) {
	t.Helper()
	if len(d.Joins) != len(joins) || len(d.Leaves) != len(leaves) || len(d.Updates) != len(updates) {
		t.Fatalf("diff %s: want %d joins %v, %d leaves %v, %d updates %v",
			diffString(d), len(joins), joins, len(leaves), leaves, len(updates), updates)
	}
	for _, j := range d.Joins {
		want, ok := joins[j.Client]
		if !ok || canon(t, j.State) != want {
			t.Fatalf("diff %s: join of %s with state %s, want %q", diffString(d), j.Client, canon(t, j.State), want)
		}
		if j.User == "" || canon(t, j.Info) == "" {
			t.Fatalf("join %+v lost its user or info", j)
		}
	}
	for i, l := range d.Leaves {
		if l.Client != leaves[i] || l.User == "" {
			t.Fatalf("diff %s: leaves, want %v", diffString(d), leaves)
		}
	}
	for _, u := range d.Updates {
		want, ok := updates[u.Client]
		if !ok || canon(t, u.State) != want || u.User == "" {
			t.Fatalf("diff %s: update of %s with patch %s, want %q", diffString(d), u.Client, canon(t, u.State), want)
		}
	}
}

func TestTrackerCoalescing(t *testing.T) {
	r := newRig(t, presence.Config{})
	quiet := 50 * time.Millisecond // five ticks

	// Nobody hears of a join that a leave undid within the tick. The leave
	// alone may still go out (for a subscriber whose snapshot, read within
	// the tick, holds the member; see TestTrackerSnapshotThenDiffs).
	t.Run("join and leave in one tick announce no join", func(t *testing.T) {
		r.inOneTick(t, func() {
			r.join(t, "s1", "u", "c1", map[string]any{"x": 1})
			r.leave(t, "s1", "c1")
		})
		deadline := time.After(quiet)
		for {
			select {
			case e := <-r.diffs:
				if e.stream != "s1" {
					continue
				}
				d := e.diff
				if len(d.Joins)+len(d.Updates) != 0 || len(d.Leaves) > 1 || (len(d.Leaves) == 1 && d.Leaves[0].Client != "c1") {
					t.Fatalf("diff %s, want nothing or c1's leave alone", diffString(d))
				}
			case <-deadline:
				return
			}
		}
	})

	t.Run("two updates merge, latest wins, nil kept", func(t *testing.T) {
		r.joined(t, "s2", "u", "c1", map[string]any{"a": 0, "b": 0, "k": "keep"})
		r.inOneTick(t, func() {
			r.update(t, "s2", "u", "c1", map[string]any{"a": 1, "b": 2})
			r.update(t, "s2", "u", "c1", map[string]any{"a": 3, "b": nil, "c": 4})
		})
		wantDiff(t, r.next(t, "s2"), nil, nil, map[string]string{"c1": `{"a":3,"b":null,"c":4}`})
		r.none(t, "s2", quiet)
		ms, _ := r.tr.Members(context.Background(), "s2")
		if len(ms) != 1 || canon(t, ms[0].State) != `{"a":3,"c":4,"k":"keep"}` {
			t.Fatalf("stored state %s", canon(t, ms[0].State))
		}
	})

	t.Run("join then updates emit one join with the latest state", func(t *testing.T) {
		r.inOneTick(t, func() {
			r.join(t, "s3", "u", "c1", map[string]any{"x": 1, "y": 1})
			r.update(t, "s3", "u", "c1", map[string]any{"y": 2})
			r.update(t, "s3", "u", "c1", map[string]any{"x": nil, "z": 3})
		})
		wantDiff(t, r.next(t, "s3"), map[string]string{"c1": `{"y":2,"z":3}`}, nil, nil)
		r.none(t, "s3", quiet)
	})

	t.Run("update then leave emit only the leave", func(t *testing.T) {
		r.joined(t, "s4", "u", "c1", map[string]any{"x": 1})
		r.inOneTick(t, func() {
			r.update(t, "s4", "u", "c1", map[string]any{"x": 2})
			r.leave(t, "s4", "c1")
		})
		wantDiff(t, r.next(t, "s4"), nil, []string{"c1"}, nil)
		r.none(t, "s4", quiet)
	})

	t.Run("leave then rejoin emit one join with the new state", func(t *testing.T) {
		r.joined(t, "s5", "u", "c1", map[string]any{"v": 1})
		r.inOneTick(t, func() {
			r.leave(t, "s5", "c1")
			r.join(t, "s5", "u", "c1", map[string]any{"v": 2})
		})
		// A subscriber replaces the member on a join, so no leave is needed.
		wantDiff(t, r.next(t, "s5"), map[string]string{"c1": `{"v":2}`}, nil, nil)
		r.none(t, "s5", quiet)
	})

	t.Run("rejoin replaces the state", func(t *testing.T) {
		r.joined(t, "s6", "u", "c1", map[string]any{"v": 1, "w": 1})
		r.inOneTick(t, func() {
			r.update(t, "s6", "u", "c1", map[string]any{"w": 2})
			r.join(t, "s6", "u", "c1", map[string]any{"v": 3})
		})
		wantDiff(t, r.next(t, "s6"), map[string]string{"c1": `{"v":3}`}, nil, nil)
		r.none(t, "s6", quiet)
	})

	t.Run("join, leave and join again emit one join", func(t *testing.T) {
		r.inOneTick(t, func() {
			r.join(t, "s7", "u", "c1", map[string]any{"n": 1})
			r.leave(t, "s7", "c1")
			r.join(t, "s7", "u", "c1", map[string]any{"n": 2})
		})
		wantDiff(t, r.next(t, "s7"), map[string]string{"c1": `{"n":2}`}, nil, nil)
		r.none(t, "s7", quiet)
	})

	t.Run("changes of several members keep first-change order", func(t *testing.T) {
		r.joined(t, "s8", "u0", "old", nil)
		r.inOneTick(t, func() {
			r.join(t, "s8", "u1", "c1", map[string]any{"i": 1})
			r.join(t, "s8", "u2", "c2", map[string]any{"i": 2})
			r.update(t, "s8", "u0", "old", map[string]any{"i": 0})
			r.join(t, "s8", "u3", "c3", map[string]any{"i": 3})
			r.update(t, "s8", "u1", "c1", map[string]any{"j": 1})
		})
		d := r.next(t, "s8")
		wantDiff(t, d, map[string]string{"c1": `{"i":1,"j":1}`, "c2": `{"i":2}`, "c3": `{"i":3}`}, nil, map[string]string{"old": `{"i":0}`})
		if got := d.Joins[0].Client + d.Joins[1].Client + d.Joins[2].Client; got != "c1c2c3" {
			t.Fatalf("joins in order %s, want c1c2c3", got)
		}
	})

	t.Run("streams get separate diffs", func(t *testing.T) {
		r.inOneTick(t, func() {
			r.join(t, "s9a", "u", "c1", nil)
			r.join(t, "s9b", "u", "c1", nil)
		})
		// One flush emits the streams in any order.
		got := map[string]*protocol.Presence{}
		deadline := time.After(5 * time.Second)
		for len(got) < 2 {
			select {
			case e := <-r.diffs:
				if e.stream == "s9a" || e.stream == "s9b" {
					got[e.stream] = e.diff
				}
			case <-deadline:
				t.Fatalf("diffs within 5s: %v, want s9a and s9b", got)
			}
		}
		wantDiff(t, got["s9a"], map[string]string{"c1": ""}, nil, nil)
		wantDiff(t, got["s9b"], map[string]string{"c1": ""}, nil, nil)
	})

	t.Run("a leave of a non-member emits nothing", func(t *testing.T) {
		r.leave(t, "s10", "nobody")
		r.none(t, "s10", quiet)
	})
}

func TestTrackerErrors(t *testing.T) {
	r := newRig(t, presence.Config{MaxMembers: 2})
	ctx := context.Background()
	err := r.tr.Update(ctx, "e", protocol.ClientInfo{User: "u", Client: "c0"}, protocol.MustRaw(map[string]any{"x": 1}))
	if !errors.Is(err, presence.ErrNotMember) {
		t.Fatalf("update before join: %v, want ErrNotMember", err)
	}
	r.joined(t, "e", "u", "c1", nil)
	r.joined(t, "e", "u", "c2", nil)
	err = r.tr.Join(ctx, "e", protocol.Member{User: "u", Client: "c3"})
	if !errors.Is(err, presence.ErrFull) {
		t.Fatalf("third join: %v, want ErrFull", err)
	}
	// A member of a full stream may still replace its own state.
	r.join(t, "e", "u", "c2", map[string]any{"v": 2})
	wantDiff(t, r.next(t, "e"), map[string]string{"c2": `{"v":2}`}, nil, nil)
	err = r.tr.Update(ctx, "e", protocol.ClientInfo{User: "u", Client: "c1"}, protocol.MustRaw([]int{1}))
	if err == nil {
		t.Fatal("a patch that is not a map was accepted")
	}
	r.none(t, "e", 50*time.Millisecond)
}

func TestTrackerGrace(t *testing.T) {
	const grace = 200 * time.Millisecond
	r := newRig(t, presence.Config{Grace: grace})

	t.Run("leave after the grace", func(t *testing.T) {
		r.joined(t, "g1", "u", "c1", nil)
		began := time.Now()
		r.tr.LeaveAfterGrace("g1", "c1")
		r.tr.LeaveAfterGrace("g1", "c1") // a second call changes nothing
		if ms, _ := r.tr.Members(context.Background(), "g1"); len(ms) != 1 {
			t.Fatalf("%d members during the grace, want 1", len(ms))
		}
		wantDiff(t, r.next(t, "g1"), nil, []string{"c1"}, nil)
		if d := time.Since(began); d < grace {
			t.Fatalf("leave after %v, before the grace of %v", d, grace)
		}
		r.none(t, "g1", grace+50*time.Millisecond)
	})

	t.Run("a join within the grace cancels the leave", func(t *testing.T) {
		r.joined(t, "g2", "u", "c1", map[string]any{"v": 1})
		r.tr.LeaveAfterGrace("g2", "c1")
		r.join(t, "g2", "u", "c1", map[string]any{"v": 2})
		wantDiff(t, r.next(t, "g2"), map[string]string{"c1": `{"v":2}`}, nil, nil)
		r.none(t, "g2", 2*grace)
		if ms, _ := r.tr.Members(context.Background(), "g2"); len(ms) != 1 {
			t.Fatalf("%d members, want 1", len(ms))
		}
	})

	t.Run("a leave within the grace is at once and once", func(t *testing.T) {
		r.joined(t, "g3", "u", "c1", nil)
		r.tr.LeaveAfterGrace("g3", "c1")
		began := time.Now()
		r.leave(t, "g3", "c1")
		wantDiff(t, r.next(t, "g3"), nil, []string{"c1"}, nil)
		if d := time.Since(began); d >= grace {
			t.Fatalf("leave took %v", d)
		}
		r.none(t, "g3", 2*grace)
	})
}

func TestTrackerTTL(t *testing.T) {
	const ttl = 300 * time.Millisecond
	r := newRig(t, presence.Config{TTL: ttl})
	ctx := context.Background()
	r.joined(t, "t", "local", "mine", nil)
	// A member written by another node that stopped heartbeating.
	if _, err := r.store.Join(ctx, "t", protocol.Member{User: "remote", Client: "theirs"}, ttl, 0); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	d := r.next(t, "t") // the expiry sweep runs once a second
	if len(d.Leaves) != 1 || d.Leaves[0].Client != "theirs" || d.Leaves[0].User != "remote" || len(d.Joins)+len(d.Updates) != 0 {
		t.Fatalf("diff %s, want the leave of remote/theirs", diffString(d))
	}
	if el := time.Since(began); el < ttl || el > ttl+1500*time.Millisecond {
		t.Fatalf("expired after %v, want within [%v, %v]", el, ttl, ttl+1500*time.Millisecond)
	}
	// The tracker's own member outlives several TTLs: the heartbeat keeps it.
	time.Sleep(3 * ttl)
	ms, _ := r.tr.Members(ctx, "t")
	if len(ms) != 1 || ms[0].Client != "mine" {
		t.Fatalf("members %+v, want only the heartbeated one", ms)
	}
	r.none(t, "t", 10*time.Millisecond)
}

func TestMergePatchesEqualsApplyingBoth(t *testing.T) {
	tests := []struct{ state, p1, p2, want string }{
		{`{"a":1}`, `{"a":2}`, `{"a":3}`, `{"a":3}`},
		{`{"a":1,"b":1}`, `{"b":null}`, `{"b":2}`, `{"a":1,"b":2}`},
		{`{"a":1,"b":1}`, `{"b":2}`, `{"b":null}`, `{"a":1}`},
		{`{}`, `{"x":{"deep":1}}`, `{"y":[1,2]}`, `{"x":{"deep":1},"y":[1,2]}`},
		{`{"x":{"deep":1,"keep":2}}`, `{}`, `{"x":{"deep":2}}`, `{"x":{"deep":2}}`}, // shallow: x is replaced whole
	}
	for _, tt := range tests {
		t.Run(tt.p1+tt.p2, func(t *testing.T) {
			raw := func(s string) protocol.Raw {
				r, err := protocol.RawFromJSON([]byte(s))
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			st, p1, p2 := raw(tt.state), raw(tt.p1), raw(tt.p2)
			a, err := presence.ApplyPatch(st, p1)
			if err != nil {
				t.Fatal(err)
			}
			seq, err := presence.ApplyPatch(a, p2)
			if err != nil {
				t.Fatal(err)
			}
			merged, err := presence.MergePatches(p1, p2)
			if err != nil {
				t.Fatal(err)
			}
			once, err := presence.ApplyPatch(st, merged)
			if err != nil {
				t.Fatal(err)
			}
			if canon(t, seq) != tt.want || canon(t, once) != tt.want {
				t.Fatalf("one by one %s, merged %s, want %s", canon(t, seq), canon(t, once), tt.want)
			}
		})
	}
}

// TestTrackerSnapshotThenDiffs checks what a subscriber relies on: a
// snapshot (Members) read in the middle of a tick, followed by the diffs
// emitted from then on, adds up to the members that remain. The server's
// subscribe does exactly this (subscribed.members, then buffered diffs).
func TestTrackerSnapshotThenDiffs(t *testing.T) {
	type op struct {
		kind   string // join, update, leave, snap
		client string
		state  any
	}
	tests := []struct {
		name   string
		before []op // done and flushed before the tick
		tick   []op // within one tick; "snap" reads the snapshot
	}{
		{"fresh join, snapshot, leave", nil,
			[]op{{"join", "c1", map[string]any{"v": 1}}, {kind: "snap"}, {"leave", "c1", nil}}},
		{"fresh join, snapshot, update", nil,
			[]op{{"join", "c1", map[string]any{"v": 1}}, {kind: "snap"}, {"update", "c1", map[string]any{"w": 2}}}},
		{"update, snapshot, update", []op{{"join", "c1", map[string]any{"v": 1}}},
			[]op{{"update", "c1", map[string]any{"v": 2, "w": 1}}, {kind: "snap"}, {"update", "c1", map[string]any{"w": nil}}}},
		{"snapshot, leave", []op{{"join", "c1", nil}},
			[]op{{kind: "snap"}, {"leave", "c1", nil}}},
		{"leave, snapshot, rejoin", []op{{"join", "c1", map[string]any{"v": 1}}},
			[]op{{"leave", "c1", nil}, {kind: "snap"}, {"join", "c1", map[string]any{"v": 2}}}},
		{"join, leave, snapshot, join", nil,
			[]op{{"join", "c1", map[string]any{"v": 1}}, {"leave", "c1", nil}, {kind: "snap"}, {"join", "c1", map[string]any{"v": 2}}}},
	}
	r := newRig(t, presence.Config{})
	ctx := context.Background()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := "snap" + strconv.Itoa(i)
			do := func(o op) {
				switch o.kind {
				case "join":
					r.join(t, stream, "u", o.client, o.state)
				case "update":
					r.update(t, stream, "u", o.client, o.state)
				case "leave":
					r.leave(t, stream, o.client)
				}
			}
			for _, o := range tt.before {
				do(o)
				r.next(t, stream)
			}
			view := map[string]string{}
			r.inOneTick(t, func() {
				for _, o := range tt.tick {
					if o.kind != "snap" {
						do(o)
						continue
					}
					ms, err := r.tr.Members(ctx, stream)
					if err != nil {
						t.Fatal(err)
					}
					for _, m := range ms {
						view[m.Client] = canon(t, m.State)
					}
				}
			})
			deadline := time.After(100 * time.Millisecond) // ten ticks: the diff is out
		drain:
			for {
				select {
				case e := <-r.diffs:
					if e.stream != stream {
						continue
					}
					for _, j := range e.diff.Joins {
						view[j.Client] = canon(t, j.State)
					}
					for _, u := range e.diff.Updates {
						s, err := presence.ApplyPatch(mustJSONRaw(t, view[u.Client]), u.State)
						if err != nil {
							t.Fatal(err)
						}
						view[u.Client] = canon(t, s)
					}
					for _, l := range e.diff.Leaves {
						delete(view, l.Client)
					}
				case <-deadline:
					break drain
				}
			}
			want := map[string]string{}
			ms, _ := r.tr.Members(ctx, stream)
			for _, m := range ms {
				want[m.Client] = canon(t, m.State)
			}
			if len(view) != len(want) {
				t.Fatalf("snapshot + diffs give %v, the members are %v", view, want)
			}
			for c, s := range want {
				if view[c] != s {
					t.Fatalf("snapshot + diffs give %v, the members are %v", view, want)
				}
			}
		})
	}
}

func mustJSONRaw(t *testing.T, s string) protocol.Raw {
	t.Helper()
	if s == "" {
		return nil
	}
	r, err := protocol.RawFromJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestTrackerHalfTick: joins and leaves go out every half tick, while a
// member's updates still go out at most once a tick.
func TestTrackerHalfTick(t *testing.T) {
	const tick = 400 * time.Millisecond
	r := newRig(t, presence.Config{Tick: tick})
	r.joined(t, "doc", "ann", "c1", map[string]any{"x": 0})

	start := time.Now()
	r.join(t, "doc", "bob", "c2", nil)
	wantDiff(t, r.next(t, "doc"), map[string]string{"c2": ""}, nil, nil)
	if d := time.Since(start); d > tick*3/4 {
		t.Errorf("a join took %v to go out with a %v tick: want about half a tick at most", d, tick)
	}

	r.update(t, "doc", "ann", "c1", map[string]any{"x": 1})
	wantDiff(t, r.next(t, "doc"), nil, nil, map[string]string{"c1": `{"x":1}`})
	first := time.Now()
	r.update(t, "doc", "ann", "c1", map[string]any{"x": 2})
	r.update(t, "doc", "ann", "c1", map[string]any{"y": 3})
	r.leave(t, "doc", "c2") // goes out on its own half tick, before ann's update
	wantDiff(t, r.next(t, "doc"), nil, []string{"c2"}, nil)
	wantDiff(t, r.next(t, "doc"), nil, nil, map[string]string{"c1": `{"x":2,"y":3}`})
	if d := time.Since(first); d < tick*3/4-tick/8 {
		t.Errorf("ann's second update went out %v after her first: want a tick apart", d)
	}
}

// lateStore is a MemoryStore whose heartbeats fail while cut is set, as
// when a node cannot reach its store for a while.
type lateStore struct {
	*presence.MemoryStore
	cut atomic.Bool
}

func (s *lateStore) Touch(ctx context.Context, stream string, clients []string, ttl time.Duration) ([]string, error) {
	if s.cut.Load() {
		return nil, errors.New("store unreachable")
	}
	return s.MemoryStore.Touch(ctx, stream, clients, ttl)
}

// TestTrackerOwnMemberExpired: a member whose heartbeats failed for longer
// than the TTL, expired by its own node, joins again while its connection
// is open (announced), and its leave is announced even if the store had
// lost it.
func TestTrackerOwnMemberExpired(t *testing.T) {
	store := &lateStore{MemoryStore: presence.NewMemoryStore()}
	diffs := make(chan *protocol.Presence, 64)
	tr := presence.NewTracker(presence.Config{TTL: 600 * time.Millisecond, Tick: 10 * time.Millisecond}, store,
		func(_ string, d *protocol.Presence) { diffs <- d })
	defer tr.Close()
	next := func() *protocol.Presence {
		t.Helper()
		select {
		case d := <-diffs:
			return d
		case <-time.After(5 * time.Second):
			t.Fatal("no diff within 5s")
			return nil
		}
	}
	ctx := context.Background()
	if err := tr.Join(ctx, "doc", protocol.Member{User: "u", Client: "c1", State: protocol.MustRaw(map[string]any{"x": 1})}); err != nil {
		t.Fatal(err)
	}
	if d := next(); len(d.Joins) != 1 {
		t.Fatalf("first diff %s", diffString(d))
	}
	if err := tr.Update(ctx, "doc", protocol.ClientInfo{User: "u", Client: "c1"}, protocol.MustRaw(map[string]any{"x": 2})); err != nil {
		t.Fatal(err)
	}
	next()
	store.cut.Store(true)
	time.Sleep(1500 * time.Millisecond) // past the TTL: the tracker's own expiry removes c1
	store.cut.Store(false)
	d := next()
	if len(d.Joins) != 1 || d.Joins[0].Client != "c1" || canon(t, d.Joins[0].State) != `{"x":2}` {
		t.Fatalf("after the outage: %s, want c1 joined again with its latest state", diffString(d))
	}
	if ms, _ := tr.Members(ctx, "doc"); len(ms) != 1 {
		t.Fatalf("members after the outage: %v", ms)
	}
	// The store loses it again; the connection then leaves: announced.
	if _, _, err := store.MemoryStore.Leave(ctx, "doc", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := tr.Leave(ctx, "doc", "c1"); err != nil {
		t.Fatal(err)
	}
	d = next()
	if len(d.Leaves) == 0 { // a heartbeat may have re-joined it in between
		d = next()
	}
	if len(d.Leaves) != 1 || d.Leaves[0].Client != "c1" {
		t.Fatalf("leave of a member the store had lost: %s", diffString(d))
	}
}

// failingLeaves is a MemoryStore whose Leave fails, as when the store is
// unreachable at that moment.
type failingLeaves struct{ *presence.MemoryStore }

func (failingLeaves) Leave(context.Context, string, string) (protocol.Member, bool, error) {
	return protocol.Member{}, false, errors.New("store unreachable")
}

// TestTrackerLeaveStoreDown: a member of this node that leaves while the
// store cannot be reached is announced as gone all the same (the store
// forgets it when its TTL runs out, as nothing renews it any more).
func TestTrackerLeaveStoreDown(t *testing.T) {
	diffs := make(chan *protocol.Presence, 16)
	tr := presence.NewTracker(presence.Config{Tick: 10 * time.Millisecond}, failingLeaves{presence.NewMemoryStore()}, func(stream string, d *protocol.Presence) { diffs <- d })
	defer tr.Close()
	ctx := context.Background()
	if err := tr.Join(ctx, "s", protocol.Member{User: "u", Client: "c"}); err != nil {
		t.Fatal(err)
	}
	if d := <-diffs; len(d.Joins) != 1 {
		t.Fatalf("diff %+v, want the join", d)
	}
	if err := tr.Leave(ctx, "s", "c"); err == nil {
		t.Fatal("leave with the store down reported no error")
	}
	select {
	case d := <-diffs:
		if len(d.Leaves) != 1 || d.Leaves[0].Client != "c" || d.Leaves[0].User != "u" {
			t.Fatalf("diff %+v, want c's leave", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no leave announced while the store was down")
	}
}
