package redis

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/redistest"
	"github.com/huddle-rt/huddle/presence"
	"github.com/huddle-rt/huddle/protocol"
)

// partitioned is a Store whose heartbeats (Touch) fail while cut is set, as
// on a node that lost its connection to Redis for a while.
type partitioned struct {
	*Store
	cut atomic.Bool
}

func (p *partitioned) Touch(ctx context.Context, stream string, clients []string, ttl time.Duration) ([]string, error) {
	if p.cut.Load() {
		return nil, errors.New("dial tcp: connection refused")
	}
	return p.Store.Touch(ctx, stream, clients, ttl)
}

func (p *partitioned) Expire(ctx context.Context, now time.Time) ([]presence.Gone, error) {
	if p.cut.Load() {
		return nil, errors.New("dial tcp: connection refused")
	}
	return p.Store.Expire(ctx, now)
}

// TestStore_LiveMemberBackAfterPartition: node A loses Redis for longer
// than the TTL; node B (correctly) expires A's member and announces its
// leave. When A's connection comes back, its member's connection is still
// open: A's next heartbeat finds it missing (Touch reports it), joins it
// again and announces the join, and its updates work. (Before, Touch with
// ZADD XX never re-added it: the live member stayed missing for good.)
func TestStore_LiveMemberBackAfterPartition(t *testing.T) {
	c := redistest.Client(t, redistest.URL(t))
	prefix := redistest.Prefix(t, c)
	cfg := presence.Config{TTL: 900 * time.Millisecond, Tick: 20 * time.Millisecond}
	storeA := &partitioned{Store: New(c, Config{Prefix: prefix})}
	var mu sync.Mutex
	var leaves []string
	emit := func(stream string, d *protocol.Presence) {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range d.Leaves {
			leaves = append(leaves, l.Client)
		}
	}
	var joinsA []string
	a := presence.NewTracker(cfg, storeA, func(stream string, d *protocol.Presence) {
		mu.Lock()
		defer mu.Unlock()
		for _, j := range d.Joins {
			joinsA = append(joinsA, j.Client)
		}
	})
	defer a.Close()
	b := presence.NewTracker(cfg, New(c, Config{Prefix: prefix}), emit)
	defer b.Close()

	if err := a.Join(t.Context(), "room", protocol.Member{User: "u", Client: "c1"}); err != nil {
		t.Fatal(err)
	}
	storeA.cut.Store(true)
	time.Sleep(3 * time.Second) // > TTL: B expires c1
	mu.Lock()
	n := len(leaves)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("B announced %d leaves of the partitioned node's member, want 1", n)
	}
	storeA.cut.Store(false) // A is back; c1's connection never closed
	time.Sleep(2 * time.Second)
	ms, err := a.Members(t.Context(), "room")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		err := a.Update(t.Context(), "room", protocol.ClientInfo{User: "u", Client: "c1"}, protocol.MustRaw(map[string]any{"x": 1}))
		t.Fatalf("member c1 is still connected to (and heartbeated by) node A but missing from presence for good; its update gets: %v", err)
	}
	if err := a.Update(t.Context(), "room", protocol.ClientInfo{User: "u", Client: "c1"}, protocol.MustRaw(map[string]any{"x": 1})); err != nil {
		t.Fatalf("update of the re-joined member: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(joinsA) != 2 || joinsA[1] != "c1" {
		t.Fatalf("node A announced joins %v, want c1 twice (joined, then back after B announced its leave)", joinsA)
	}
}
