package occupancy_test

import (
	"testing"

	"github.com/huddle-rt/huddle/internal/webhooks/occupancy"
	"github.com/huddle-rt/huddle/internal/webhooks/occupancy/occupancytest"
)

func TestMemoryStore(t *testing.T) {
	occupancytest.Run(t, func(*testing.T) occupancy.Store { return occupancy.NewMemoryStore() })
}

func TestTracker(t *testing.T) {
	occupancytest.RunTracker(t, func(*testing.T) occupancy.Store { return occupancy.NewMemoryStore() })
}
