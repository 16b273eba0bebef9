package occupancy

import (
	"context"
	"sync"
	"time"
)

// MemoryStore is the Store of a single node (or of Trackers sharing one
// process, in tests).
type MemoryStore struct {
	mu   sync.Mutex                      // guards keys
	keys map[string]map[string]time.Time // key -> node -> expiry
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{keys: make(map[string]map[string]time.Time)}
}

// Add implements Store.
func (s *MemoryStore) Add(ctx context.Context, node string, keys []string, expires time.Time) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var first []string
	for _, k := range keys {
		nodes := s.keys[k]
		if nodes == nil {
			nodes = make(map[string]time.Time, 1)
			s.keys[k] = nodes
			first = append(first, k)
		}
		nodes[node] = expires
	}
	return first, nil
}

// Remove implements Store.
func (s *MemoryStore) Remove(ctx context.Context, node string, keys []string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var last []string
	for _, k := range keys {
		nodes := s.keys[k]
		if _, ok := nodes[node]; !ok {
			continue
		}
		delete(nodes, node)
		if len(nodes) == 0 {
			delete(s.keys, k)
			last = append(last, k)
		}
	}
	return last, nil
}

// Expire implements Store.
func (s *MemoryStore) Expire(ctx context.Context, now time.Time) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var last []string
	for k, nodes := range s.keys {
		for n, exp := range nodes {
			if exp.Before(now) {
				delete(nodes, n)
			}
		}
		if len(nodes) == 0 {
			delete(s.keys, k)
			last = append(last, k)
		}
	}
	return last, nil
}
