package presence

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/huddle-rt/huddle/protocol"
)

const memShards = 32

// MemoryStore is the single-node Store.
type MemoryStore struct {
	seed   maphash.Seed
	now    func() time.Time
	shards [memShards]memShard
}

var _ Store = (*MemoryStore)(nil)

type memShard struct {
	mu      sync.Mutex // guards streams
	streams map[string]map[string]*memMember
}

type memMember struct {
	m       protocol.Member
	expires int64 // unix nanos
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{seed: maphash.MakeSeed(), now: time.Now}
	for i := range s.shards {
		s.shards[i].streams = make(map[string]map[string]*memMember)
	}
	return s
}

func (s *MemoryStore) shard(stream string) *memShard {
	return &s.shards[maphash.String(s.seed, stream)%memShards]
}

// Join implements Store.
func (s *MemoryStore) Join(ctx context.Context, stream string, m protocol.Member, ttl time.Duration, max int) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	sh := s.shard(stream)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	members := sh.streams[stream]
	if members == nil {
		members = make(map[string]*memMember)
		sh.streams[stream] = members
	}
	exp := s.now().Add(ttl).UnixNano()
	if e := members[m.Client]; e != nil {
		e.m, e.expires = m, exp
		return false, nil
	}
	if max > 0 && len(members) >= max {
		return false, ErrFull
	}
	members[m.Client] = &memMember{m: m, expires: exp}
	return true, nil
}

// Update implements Store.
func (s *MemoryStore) Update(ctx context.Context, stream, client string, patch protocol.Raw, ttl time.Duration, maxState int) (protocol.Raw, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sh := s.shard(stream)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.streams[stream][client]
	if e == nil {
		return nil, ErrNotMember
	}
	state, err := ApplyPatch(e.m.State, patch)
	if err != nil {
		return nil, err
	}
	if maxState > 0 && len(state) > maxState {
		return nil, ErrTooLarge
	}
	e.m.State = state
	e.expires = s.now().Add(ttl).UnixNano()
	return state, nil
}

// Leave implements Store.
func (s *MemoryStore) Leave(ctx context.Context, stream, client string) (protocol.Member, bool, error) {
	if err := ctx.Err(); err != nil {
		return protocol.Member{}, false, err
	}
	sh := s.shard(stream)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	members := sh.streams[stream]
	e := members[client]
	if e == nil {
		return protocol.Member{}, false, nil
	}
	delete(members, client)
	if len(members) == 0 {
		delete(sh.streams, stream)
	}
	return e.m, true, nil
}

// Members implements Store.
func (s *MemoryStore) Members(ctx context.Context, stream string) ([]protocol.Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sh := s.shard(stream)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	members := sh.streams[stream]
	out := make([]protocol.Member, 0, len(members))
	for _, e := range members {
		out = append(out, e.m)
	}
	return out, nil
}

// Touch implements Store.
func (s *MemoryStore) Touch(ctx context.Context, stream string, clients []string, ttl time.Duration) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	exp := s.now().Add(ttl).UnixNano()
	sh := s.shard(stream)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	members := sh.streams[stream]
	var missing []string
	for _, c := range clients {
		if e := members[c]; e != nil {
			e.expires = exp
		} else {
			missing = append(missing, c)
		}
	}
	return missing, nil
}

// Expire implements Store.
func (s *MemoryStore) Expire(ctx context.Context, now time.Time) ([]Gone, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var gone []Gone
	t := now.UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for stream, members := range sh.streams {
			for client, e := range members {
				if e.expires < t {
					delete(members, client)
					gone = append(gone, Gone{Stream: stream, ClientInfo: protocol.ClientInfo{User: e.m.User, Client: client}})
				}
			}
			if len(members) == 0 {
				delete(sh.streams, stream)
			}
		}
		sh.mu.Unlock()
	}
	return gone, nil
}
