// Package presence tracks who is in each stream: members with public info
// from their token and a state they set, kept alive by the node that owns
// their connection, and announced to subscribers as batched diffs.
//
// A Store holds the members (memory here; Redis later implements the same
// interface and runs the same suite, presencetest.Run). A Tracker is the
// node's side: it writes to the store, heartbeats its own members, delays the
// leave of an abruptly disconnected member by a grace period, and batches all
// changes of a stream within one tick into one diff. It does no network I/O
// of its own and never calls out while holding its lock.
package presence

import (
	"context"
	"errors"
	"time"

	"github.com/huddle-rt/huddle/protocol"
)

// Errors of stores and trackers.
var (
	ErrFull      = errors.New("presence: stream is full")
	ErrNotMember = errors.New("presence: not a member")
	ErrTooLarge  = errors.New("presence: state too large")
)

// Config tunes presence. Zero fields take the defaults.
type Config struct {
	// Grace delays the leave of a member whose connection dropped without
	// a close, so a quick reconnect does not flap. Default 5s.
	Grace time.Duration
	// TTL is how long a member lives without its node's heartbeat (a dead
	// node's members vanish within it). Default 30s.
	TTL time.Duration
	// Tick bounds a member's updates to one a tick; a stream's changes go
	// out as one diff every half tick. Default 50ms.
	Tick time.Duration
	// MaxState bounds a member's state in bytes (msgpack). Default 4096.
	MaxState int
	// MaxMembers bounds a stream's members. Default 10000.
	MaxMembers int
	// UpdateRate and UpdateBurst bound a connection's updates per second.
	// Defaults 30 and 60.
	UpdateRate  float64
	UpdateBurst int
}

// WithDefaults returns c with zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Grace <= 0 {
		c.Grace = 5 * time.Second
	}
	if c.TTL <= 0 {
		c.TTL = 30 * time.Second
	}
	if c.Tick <= 0 {
		c.Tick = 50 * time.Millisecond
	}
	if c.MaxState <= 0 {
		c.MaxState = 4096
	}
	if c.MaxMembers <= 0 {
		c.MaxMembers = 10000
	}
	if c.UpdateRate <= 0 {
		c.UpdateRate = 30
	}
	if c.UpdateBurst <= 0 {
		c.UpdateBurst = 60
	}
	return c
}

// Gone names a member that expired.
type Gone struct {
	Stream string
	protocol.ClientInfo
}

// Store holds members by (stream, client). Implementations are safe for
// concurrent use.
type Store interface {
	// Join adds m, or replaces the member with m's client. created reports
	// a new member. It fails with ErrFull when the stream has max members.
	Join(ctx context.Context, stream string, m protocol.Member, ttl time.Duration, max int) (created bool, err error)
	// Update applies a state patch and returns the new state; ErrNotMember
	// when the client is not a member, ErrTooLarge (and no change) when the
	// new state would exceed maxState bytes (0: no bound).
	Update(ctx context.Context, stream, client string, patch protocol.Raw, ttl time.Duration, maxState int) (protocol.Raw, error)
	// Leave removes a member and returns it; ok is false if it was absent.
	Leave(ctx context.Context, stream, client string) (m protocol.Member, ok bool, err error)
	// Members returns the stream's members.
	Members(ctx context.Context, stream string) ([]protocol.Member, error)
	// Touch extends the life of the given members by ttl and returns the
	// clients it did not find (expired while their node could not reach
	// the store, say).
	Touch(ctx context.Context, stream string, clients []string, ttl time.Duration) (missing []string, err error)
	// Expire removes members whose life ended before now and returns them.
	Expire(ctx context.Context, now time.Time) ([]Gone, error)
}
