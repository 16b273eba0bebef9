package presence_test

import (
	"testing"

	"github.com/huddle-rt/huddle/presence"
	"github.com/huddle-rt/huddle/presence/presencetest"
)

func TestMemoryStore(t *testing.T) {
	presencetest.Run(t, func(t *testing.T) presence.Store { return presence.NewMemoryStore() })
}
