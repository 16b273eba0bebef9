package redis_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/redistest"
	"github.com/huddle-rt/huddle/internal/webhooks/occupancy"
	"github.com/huddle-rt/huddle/internal/webhooks/occupancy/occupancytest"
	"github.com/huddle-rt/huddle/internal/webhooks/occupancy/redis"
)

func TestStore(t *testing.T) {
	url := redistest.URL(t)
	occupancytest.Run(t, func(t *testing.T) occupancy.Store {
		c := redistest.Client(t, url)
		return redis.New(c, redis.Config{Prefix: redistest.Prefix(t, c)})
	})
}

func TestTracker(t *testing.T) {
	url := redistest.URL(t)
	occupancytest.RunTracker(t, func(t *testing.T) occupancy.Store {
		c := redistest.Client(t, url)
		return redis.New(c, redis.Config{Prefix: redistest.Prefix(t, c)})
	})
}

// TestExpireMany: one sweep gets through more due keys than one round
// reads, so a large cluster's dead node is released on time.
func TestExpireMany(t *testing.T) {
	url := redistest.URL(t)
	c := redistest.Client(t, url)
	s := redis.New(c, redis.Config{Prefix: redistest.Prefix(t, c)})
	const n = 2500
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("s:%d", i)
	}
	now := time.Now()
	if _, err := s.Add(t.Context(), "dead", keys, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	last, err := s.Expire(t.Context(), now.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != n {
		t.Fatalf("one sweep released %d keys, want %d", len(last), n)
	}
}
