package cable

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"
)

// DefaultSessionTTL is how long a closed connection's session can be
// restored (--sessions-ttl).
const DefaultSessionTTL = 5 * time.Minute

// ErrNoSession is returned by SessionStore.Take for an unknown or expired
// session id.
var ErrNoSession = errors.New("no such session")

// SessionStore keeps the sessions of closed connections for a reconnect
// with ?sid= to restore. A session is taken once: a second restore of the
// same id finds nothing.
type SessionStore interface {
	Save(ctx context.Context, sid string, state []byte, ttl time.Duration) error
	Take(ctx context.Context, sid string) ([]byte, error)
}

// savedSession is what a restore needs: the credentials to verify again
// (never the identity itself: an expired or revoked token restores
// nothing) and the subscriptions as the client knows them.
type savedSession struct {
	JID      string         `json:"jid,omitempty"`
	Token    string         `json:"token,omitempty"`
	Channels []savedChannel `json:"channels,omitempty"`
}

type savedChannel struct {
	Identifier string `json:"i"`
	Stream     string `json:"s"`
	Signed     bool   `json:"g,omitempty"`
}

func (s *savedSession) marshal() []byte {
	b, _ := json.Marshal(s)
	return b
}

// maxSessionBytes bounds a saved session (a client with a thousand
// subscriptions of long identifiers is still far below it).
const maxSessionBytes = 1 << 20

// MemorySessions is a SessionStore in memory, for one node: bounded in
// entries, expired entries swept as new ones come.
type MemorySessions struct {
	mu      sync.Mutex // guards the following
	entries map[string]memSession
	max     int
	sweepAt time.Time
}

type memSession struct {
	state   []byte
	expires time.Time
}

// NewMemorySessions returns a store of at most max sessions (past it, a new
// session is not kept and its client resubscribes instead).
func NewMemorySessions(max int) *MemorySessions {
	return &MemorySessions{entries: make(map[string]memSession), max: max}
}

// Save implements SessionStore.
func (m *MemorySessions) Save(_ context.Context, sid string, state []byte, ttl time.Duration) error {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.After(m.sweepAt) || len(m.entries) >= m.max {
		for k, e := range m.entries {
			if now.After(e.expires) {
				delete(m.entries, k)
			}
		}
		m.sweepAt = now.Add(ttl / 4)
	}
	if len(m.entries) >= m.max {
		return errors.New("session store full")
	}
	m.entries[sid] = memSession{state: state, expires: now.Add(ttl)}
	return nil
}

// Take implements SessionStore.
func (m *MemorySessions) Take(_ context.Context, sid string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[sid]
	if !ok {
		return nil, ErrNoSession
	}
	delete(m.entries, sid)
	if time.Now().After(e.expires) {
		return nil, ErrNoSession
	}
	return e.state, nil
}
