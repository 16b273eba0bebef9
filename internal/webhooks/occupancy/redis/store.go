// Package redis is the occupancy.Store kept in Redis, shared by the nodes
// of a cluster.
//
// Each key has a sorted set of node -> expiry (unix ms) under the hash tag
// {key}; every change of it is one Lua script, so of the nodes that change
// a key at once exactly one sees it go from empty to held or back. A
// sorted set of key -> a time at or before the key's earliest expiry (the
// index) lets Expire find the keys worth looking at without scanning the
// keyspace. Expiries come from the nodes' clocks, which must agree to well
// within the TTL.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/internal/webhooks/occupancy"
)

// DefaultPrefix starts every key name when Config.Prefix is empty.
const DefaultPrefix = "huddle:"

const (
	// keyGrace is how long a key's set outlives its latest expiry, so the
	// sweep, not Redis, removes a dead node's entries, unless every node
	// is gone.
	keyGrace = time.Minute
	// expireBatch bounds the keys one round of Expire looks at, and
	// expireRounds the rounds of one Expire (each sweep, every second):
	// every held key comes due about once per TTL, so a cluster holds up
	// to expireBatch*expireRounds*TTL/s keys (480,000 at the default 30s)
	// before sweeps fall behind.
	expireBatch  = 1000
	expireRounds = 16
)

// Config tunes a Store.
type Config struct {
	// Prefix starts every key name. Default DefaultPrefix. It should not
	// contain '{' or '}'.
	Prefix string
}

// Store is an occupancy.Store in Redis. It holds no state besides its
// configuration. It needs Redis 6.2 or later.
type Store struct {
	client rueidis.Client
	prefix string
}

var _ occupancy.Store = (*Store)(nil)

// New returns a Store over client, which the caller keeps and closes after
// the Store's last use.
func New(client rueidis.Client, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	return &Store{client: client, prefix: cfg.Prefix + "occ:"}
}

func (s *Store) key(k string) string { return s.prefix + "{" + k + "}" }
func (s *Store) indexKey() string    { return s.prefix + "index" }

// addScript sets node ARGV[1]'s expiry ARGV[2] in the key's set and keeps
// the set ARGV[3] ms at least; 1 if the set was empty.
var addScript = rueidis.NewLuaScript(`
local n = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if n == 0 then return 1 end
return 0
`)

// removeScript removes node ARGV[1]; 1 if that left the set empty.
var removeScript = rueidis.NewLuaScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('ZCARD', KEYS[1]) == 0 then return 1 end
return 0
`)

// expireScript removes entries that expired before ARGV[1] (unix ms) and
// returns {1 if that left the set empty else 0, the earliest expiry left
// or -1}.
var expireScript = rueidis.NewLuaScript(`
local n = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
local left = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local emptied = 0
if n > 0 and #left == 0 then emptied = 1 end
if #left == 0 then return {emptied, -1} end
return {emptied, tonumber(left[2])}
`)

// Add implements occupancy.Store.
func (s *Store) Add(ctx context.Context, node string, keys []string, expires time.Time) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	exp := expires.UnixMilli()
	ttl := strconv.FormatInt(max(time.Until(expires)+keyGrace, keyGrace).Milliseconds(), 10)
	args := []string{node, strconv.FormatInt(exp, 10), ttl}
	// The index before the sets, so that a node dying in between leaves
	// no entry unindexed, and after them, so that a sweep's delete of the
	// index entry in between (see Expire) cannot either. LT keeps an
	// earlier time.
	index := func() rueidis.Completed {
		idx := s.client.B().Zadd().Key(s.indexKey()).Lt().ScoreMember()
		for _, k := range keys {
			idx = idx.ScoreMember(float64(exp), k)
		}
		return idx.Build()
	}
	if err := s.client.Do(ctx, index()).Error(); err != nil {
		return nil, fmt.Errorf("occupancy/redis: add: index: %w", err)
	}
	execs := make([]rueidis.LuaExec, len(keys))
	for i, k := range keys {
		execs[i] = rueidis.LuaExec{Keys: []string{s.key(k)}, Args: args}
	}
	var first []string
	var errs []error
	for i, r := range addScript.ExecMulti(ctx, s.client, execs...) {
		n, err := r.AsInt64()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n == 1 {
			first = append(first, keys[i])
		}
	}
	if err := s.client.Do(ctx, index()).Error(); err != nil {
		errs = append(errs, fmt.Errorf("index: %w", err))
	}
	if len(errs) > 0 {
		return first, fmt.Errorf("occupancy/redis: add: %w", errors.Join(errs...))
	}
	return first, nil
}

// Remove implements occupancy.Store.
func (s *Store) Remove(ctx context.Context, node string, keys []string) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	execs := make([]rueidis.LuaExec, len(keys))
	for i, k := range keys {
		execs[i] = rueidis.LuaExec{Keys: []string{s.key(k)}, Args: []string{node}}
	}
	var last []string
	var errs []error
	for i, r := range removeScript.ExecMulti(ctx, s.client, execs...) {
		n, err := r.AsInt64()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n == 1 {
			last = append(last, keys[i])
		}
	}
	if len(errs) > 0 {
		return last, fmt.Errorf("occupancy/redis: remove: %w", errors.Join(errs...))
	}
	return last, nil
}

// Expire implements occupancy.Store. For each due key it deletes the index
// entry, sweeps the set, and indexes it again at its earliest expiry left:
// an Add landing meanwhile writes its own index entry after the sweep's
// delete, so no entry is ever left without one.
func (s *Store) Expire(ctx context.Context, now time.Time) ([]string, error) {
	var last []string
	for range expireRounds {
		l, n, err := s.expireOnce(ctx, now)
		last = append(last, l...)
		if err != nil || n < expireBatch {
			return last, err
		}
	}
	return last, nil
}

// expireOnce sweeps up to expireBatch due keys; n is how many were due.
func (s *Store) expireOnce(ctx context.Context, now time.Time) (last []string, n int, err error) {
	c := s.client
	ms := now.UnixMilli()
	due, err := c.Do(ctx, c.B().Zrangebyscore().Key(s.indexKey()).Min("-inf").Max(strconv.FormatInt(ms, 10)).Limit(0, expireBatch).Build()).AsStrSlice()
	if err != nil {
		return nil, 0, fmt.Errorf("occupancy/redis: expire: read index: %w", err)
	}
	if len(due) == 0 {
		return nil, 0, nil
	}
	if err := c.Do(ctx, c.B().Zrem().Key(s.indexKey()).Member(due...).Build()).Error(); err != nil {
		return nil, len(due), fmt.Errorf("occupancy/redis: expire: index: %w", err)
	}
	execs := make([]rueidis.LuaExec, len(due))
	arg := []string{strconv.FormatInt(ms, 10)}
	for i, k := range due {
		execs[i] = rueidis.LuaExec{Keys: []string{s.key(k)}, Args: arg}
	}
	var errs []error
	idx := c.B().Zadd().Key(s.indexKey()).Lt().ScoreMember()
	reindex := 0
	for i, r := range expireScript.ExecMulti(ctx, c, execs...) {
		v, err := r.AsIntSlice()
		if err != nil || len(v) != 2 {
			// Unknown: index it again now, so a later sweep looks again.
			errs = append(errs, fmt.Errorf("%q: %w", due[i], err))
			idx = idx.ScoreMember(float64(ms), due[i])
			reindex++
			continue
		}
		if v[0] == 1 {
			last = append(last, due[i])
		}
		if v[1] >= 0 {
			idx = idx.ScoreMember(float64(v[1]), due[i])
			reindex++
		}
	}
	if reindex > 0 {
		if err := c.Do(ctx, idx.Build()).Error(); err != nil {
			errs = append(errs, fmt.Errorf("index: %w", err))
		}
	}
	if len(errs) > 0 {
		return last, len(due), fmt.Errorf("occupancy/redis: expire: %w", errors.Join(errs...))
	}
	return last, len(due), nil
}
