package redis_test

import (
	"testing"

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
