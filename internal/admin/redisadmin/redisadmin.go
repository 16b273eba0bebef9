// Package redisadmin keeps the admin page's node snapshots in Redis, so
// that every node's page shows the whole cluster: one hash, a field per
// node, each value the node's latest snapshot and until when it is live.
// One key, so it works on a Redis Cluster as on one Redis.
package redisadmin

import (
	"context"
	"encoding/json"
	"time"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/internal/admin"
)

// Store is an admin.Store in Redis.
type Store struct {
	client rueidis.Client
	key    string
}

var _ admin.Store = (*Store)(nil)

// New returns a store under prefix (e.g. "huddle:").
func New(client rueidis.Client, prefix string) *Store {
	return &Store{client: client, key: prefix + "admin:nodes"}
}

type entry struct {
	Till time.Time      `json:"till"`
	Snap admin.Snapshot `json:"snapshot"`
}

// Put implements admin.Store.
func (s *Store) Put(ctx context.Context, snap admin.Snapshot, ttl time.Duration) error {
	b, err := json.Marshal(entry{Till: time.Now().Add(ttl), Snap: snap})
	if err != nil {
		return err
	}
	return s.client.Do(ctx, s.client.B().Hset().Key(s.key).FieldValue().FieldValue(snap.Node, string(b)).Build()).Error()
}

// All implements admin.Store: the live entries; those past their time
// (a node that stopped) are removed.
func (s *Store) All(ctx context.Context) ([]admin.Snapshot, error) {
	m, err := s.client.Do(ctx, s.client.B().Hgetall().Key(s.key).Build()).AsStrMap()
	if err != nil {
		return nil, err
	}
	var out []admin.Snapshot
	for node, v := range m {
		var e entry
		if json.Unmarshal([]byte(v), &e) != nil || time.Now().After(e.Till) {
			_ = s.client.Do(ctx, s.client.B().Hdel().Key(s.key).Field(node).Build()).Error()
			continue
		}
		out = append(out, e.Snap)
	}
	return out, nil
}
