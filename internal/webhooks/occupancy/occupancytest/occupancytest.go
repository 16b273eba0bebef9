// Package occupancytest is the suite every occupancy.Store passes.
package occupancytest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/webhooks/occupancy"
)

// Run runs the suite; newStore returns an empty store (stores of one call
// share nothing with another's).
func Run(t *testing.T, newStore func(t *testing.T) occupancy.Store) {
	ctx := context.Background()
	hour := time.Now().Add(time.Hour)
	same := func(t *testing.T, what string, got []string, want ...string) {
		t.Helper()
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s = %q, want %q", what, got, want)
		}
	}
	must := func(t *testing.T) func([]string, error) []string {
		return func(keys []string, err error) []string {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			return keys
		}
	}

	t.Run("first and last", func(t *testing.T) {
		s := newStore(t)
		same(t, "a adds k, j", must(t)(s.Add(ctx, "a", []string{"k", "j"}, hour)), "k", "j")
		same(t, "b adds k", must(t)(s.Add(ctx, "b", []string{"k"}, hour)))
		same(t, "a adds k again", must(t)(s.Add(ctx, "a", []string{"k"}, hour)))
		same(t, "a removes k", must(t)(s.Remove(ctx, "a", []string{"k"})))
		same(t, "b removes k, j", must(t)(s.Remove(ctx, "b", []string{"k", "j"})), "k")
		same(t, "b removes k again", must(t)(s.Remove(ctx, "b", []string{"k"})))
		same(t, "a removes j", must(t)(s.Remove(ctx, "a", []string{"j"})), "j")
		same(t, "a adds k after all left", must(t)(s.Add(ctx, "a", []string{"k"}, hour)), "k")
	})

	t.Run("expire", func(t *testing.T) {
		s := newStore(t)
		now := time.Now()
		same(t, "a adds", must(t)(s.Add(ctx, "a", []string{"k", "j"}, now.Add(100*time.Millisecond))), "k", "j")
		same(t, "b adds j", must(t)(s.Add(ctx, "b", []string{"j"}, hour)))
		same(t, "expire before", must(t)(s.Expire(ctx, now)))
		same(t, "expire after a's expiry", must(t)(s.Expire(ctx, now.Add(time.Second))), "k")
		same(t, "expire again", must(t)(s.Expire(ctx, now.Add(2*time.Second))))
		same(t, "a removes its swept entries", must(t)(s.Remove(ctx, "a", []string{"k", "j"})))
		same(t, "b removes j", must(t)(s.Remove(ctx, "b", []string{"j"})), "j")
	})

	t.Run("refresh outlives the first expiry", func(t *testing.T) {
		s := newStore(t)
		now := time.Now()
		must(t)(s.Add(ctx, "a", []string{"k"}, now.Add(100*time.Millisecond)))
		same(t, "refresh", must(t)(s.Add(ctx, "a", []string{"k"}, now.Add(time.Hour))))
		same(t, "expire after the first expiry", must(t)(s.Expire(ctx, now.Add(time.Second))))
		same(t, "expire long after", must(t)(s.Expire(ctx, now.Add(2*time.Hour))), "k")
	})

	t.Run("concurrent sweeps report each key once", func(t *testing.T) {
		s := newStore(t)
		now := time.Now()
		var keys []string
		for i := range 200 {
			keys = append(keys, fmt.Sprintf("k%d", i))
		}
		must(t)(s.Add(ctx, "dead", keys, now.Add(50*time.Millisecond)))
		must(t)(s.Add(ctx, "alive", keys[:100], hour))
		var mu sync.Mutex
		var got []string
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 3 {
					last, err := s.Expire(ctx, now.Add(time.Second))
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					got = append(got, last...)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		same(t, "swept", got, keys[100:]...)
	})
}

// dead is a Store whose every call fails once killed: a node that died.
type dead struct {
	occupancy.Store
	mu     sync.Mutex
	killed bool
}

func (d *dead) gone() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.killed {
		return errors.New("killed")
	}
	return nil
}

func (d *dead) Add(ctx context.Context, node string, keys []string, exp time.Time) ([]string, error) {
	if err := d.gone(); err != nil {
		return nil, err
	}
	return d.Store.Add(ctx, node, keys, exp)
}

func (d *dead) Remove(ctx context.Context, node string, keys []string) ([]string, error) {
	if err := d.gone(); err != nil {
		return nil, err
	}
	return d.Store.Remove(ctx, node, keys)
}

func (d *dead) Expire(ctx context.Context, now time.Time) ([]string, error) {
	if err := d.gone(); err != nil {
		return nil, err
	}
	return d.Store.Expire(ctx, now)
}

// events records a tracker's callbacks, of every tracker of a test.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.list = append(e.list, s)
	e.mu.Unlock()
}

func (e *events) tracker(cfg occupancy.Config, s occupancy.Store) *occupancy.Tracker {
	return occupancy.NewTracker(cfg, s, func(k string) { e.add("first " + k) }, func(k string) { e.add("last " + k) })
}

// waitFor waits until the events are want (in any order), and checks they
// stay so for a while.
func (e *events) waitFor(t *testing.T, within time.Duration, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	for end := time.Now().Add(within); ; {
		e.mu.Lock()
		got = slices.Sorted(slices.Values(e.list))
		e.mu.Unlock()
		if slices.Equal(got, want) || time.Now().After(end) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	time.Sleep(300 * time.Millisecond)
	e.mu.Lock()
	defer e.mu.Unlock()
	if got := slices.Sorted(slices.Values(e.list)); !slices.Equal(got, want) {
		t.Fatalf("events became %q, want %q", got, want)
	}
}

// RunTracker runs Trackers of two nodes on one store: each key's first and
// last are reported exactly once, by whichever node saw them, also when a
// node dies holding keys.
func RunTracker(t *testing.T, newStore func(t *testing.T) occupancy.Store) {
	const ttl = 900 * time.Millisecond
	t.Run("two nodes", func(t *testing.T) {
		s := newStore(t)
		var ev events
		a := ev.tracker(occupancy.Config{TTL: ttl}, s)
		b := ev.tracker(occupancy.Config{TTL: ttl}, s)
		defer b.Close(context.Background())
		a.Inc("k")
		a.Inc("k")
		b.Inc("k")
		b.Dec("j") // a Dec before its Inc
		b.Inc("j")
		ev.waitFor(t, 2*time.Second, "first k")
		a.Dec("k")
		a.Dec("k")
		time.Sleep(2 * ttl) // refreshes and sweeps keep b's entry
		ev.waitFor(t, 2*time.Second, "first k")
		b.Dec("k")
		ev.waitFor(t, 2*time.Second, "first k", "last k")
		a.Inc("k")
		ev.waitFor(t, 2*time.Second, "first k", "last k", "first k")
		a.Close(context.Background()) // a drains: its entry goes at once
		ev.waitFor(t, 2*time.Second, "first k", "last k", "first k", "last k")
	})

	t.Run("linger", func(t *testing.T) {
		s := newStore(t)
		var ev events
		a := ev.tracker(occupancy.Config{TTL: ttl, Linger: 300 * time.Millisecond}, s)
		a.Inc("k")
		ev.waitFor(t, 2*time.Second, "first k")
		a.Dec("k")
		time.Sleep(100 * time.Millisecond)
		a.Inc("k") // back within the linger: nothing happens
		ev.waitFor(t, time.Second, "first k")
		a.Dec("k")
		start := time.Now()
		ev.waitFor(t, 2*time.Second, "first k", "last k")
		if el := time.Since(start); el < 250*time.Millisecond {
			t.Errorf("last after %v, want the linger of 300ms", el)
		}
		a.Inc("k")
		ev.waitFor(t, 2*time.Second, "first k", "last k", "first k")
		a.Dec("k")
		a.Close(context.Background()) // a lingering Dec takes effect at once
		ev.waitFor(t, 0, "first k", "last k", "first k", "last k")
	})

	t.Run("a dead node's keys are released once", func(t *testing.T) {
		s := newStore(t)
		var ev events
		da := &dead{Store: s}
		a := ev.tracker(occupancy.Config{TTL: ttl}, da)
		defer a.Close(context.Background())
		b := ev.tracker(occupancy.Config{TTL: ttl}, s)
		defer b.Close(context.Background())
		c := ev.tracker(occupancy.Config{TTL: ttl}, s)
		defer c.Close(context.Background())
		a.Inc("k1")
		a.Inc("k2")
		b.Inc("k2")
		ev.waitFor(t, 2*time.Second, "first k1", "first k2")
		da.mu.Lock()
		da.killed = true
		da.mu.Unlock()
		// b and c sweep; one of them reports k1 once it expires.
		ev.waitFor(t, 3*ttl, "first k1", "first k2", "last k1")
		b.Dec("k2")
		ev.waitFor(t, 2*time.Second, "first k1", "first k2", "last k1", "last k2")
	})
}
