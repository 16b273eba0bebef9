// Package redissessions keeps /cable's restorable sessions in Redis, so that
// a client dropped by one node (a rolling restart) restores its session on
// any other. A session is a string key with the session TTL as its expiry,
// taken with GETDEL: one restore per session id.
//
// It knows Redis and nothing of connections.
package redissessions

import (
	"context"
	"errors"
	"time"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/internal/frontend/cable"
)

// Store is a cable.SessionStore in Redis.
type Store struct {
	client rueidis.Client
	prefix string
}

var _ cable.SessionStore = (*Store)(nil)

// New returns a store whose keys start with prefix + "cable:session:".
func New(client rueidis.Client, prefix string) *Store {
	return &Store{client: client, prefix: prefix + "cable:session:"}
}

// Save implements cable.SessionStore.
func (s *Store) Save(ctx context.Context, sid string, state []byte, ttl time.Duration) error {
	cmd := s.client.B().Set().Key(s.prefix + sid).Value(rueidis.BinaryString(state)).Px(ttl).Build()
	return s.client.Do(ctx, cmd).Error()
}

// Take implements cable.SessionStore.
func (s *Store) Take(ctx context.Context, sid string) ([]byte, error) {
	b, err := s.client.Do(ctx, s.client.B().Getdel().Key(s.prefix+sid).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, cable.ErrNoSession
	}
	if err != nil {
		return nil, errors.Join(cable.ErrNoSession, err)
	}
	return b, nil
}
