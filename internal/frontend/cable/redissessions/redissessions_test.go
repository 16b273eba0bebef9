package redissessions

import (
	"errors"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/frontend/cable"
	"github.com/huddle-rt/huddle/internal/redistest"
)

// TestStore: against a real redis-server, a saved session is taken once,
// and expires with its TTL.
func TestStore(t *testing.T) {
	url := redistest.URL(t)
	client := redistest.Client(t, url)
	s := New(client, redistest.Prefix(t, client))
	ctx := t.Context()
	if err := s.Save(ctx, "a", []byte(`{"x":1}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Take(ctx, "a"); err != nil || string(b) != `{"x":1}` {
		t.Fatalf("Take: %q %v", b, err)
	}
	if _, err := s.Take(ctx, "a"); !errors.Is(err, cable.ErrNoSession) {
		t.Fatalf("second Take: %v, want ErrNoSession", err)
	}
	if err := s.Save(ctx, "b", []byte("y"), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if _, err := s.Take(ctx, "b"); !errors.Is(err, cable.ErrNoSession) {
		t.Fatalf("Take after the TTL: %v, want ErrNoSession", err)
	}
}
