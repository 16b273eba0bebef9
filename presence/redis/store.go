// Package redis is the presence.Store kept in Redis, for deployments of
// more than one node: every node sees every member, and the members of a
// node that died vanish once their TTL passes without its heartbeat.
//
// Each stream has two keys sharing the hash tag {stream} (one Redis Cluster
// slot): a hash of client -> msgpack-encoded protocol.Member, and a sorted
// set of client -> expiry in unix milliseconds. Every change of a stream is
// one Lua script over those two keys. A third key, a sorted set of stream ->
// a time at or before the stream's earliest expiry, lets Expire find the
// streams worth looking at without scanning the keyspace.
//
// Expiry times come from the clocks of the nodes: Join, Update and Touch
// stamp now+ttl from the local clock, and Expire compares with the time it
// is given. Nodes' clocks must agree to well within the TTL.
//
// The package must not announce presence changes: the Tracker does that
// from what the Store returns.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/huddle-rt/huddle/presence"
	"github.com/huddle-rt/huddle/protocol"
)

// DefaultPrefix starts every key name when Config.Prefix is empty.
const DefaultPrefix = "huddle:"

const (
	// keyGrace is how long a stream's keys outlive its latest expiry, so
	// that Expire, which every node calls each second, reports the members
	// before Redis drops the keys.
	keyGrace = time.Minute
	// expireBatch bounds the streams Expire looks at per index read and
	// the members one script removes, so no single script runs long.
	expireBatch = 1000
	// maxUpdateAttempts bounds the compare-and-set retries of one Update.
	maxUpdateAttempts = 32
)

// Config tunes a Store. The zero value is ready to use.
type Config struct {
	// Prefix starts the name of every key the store writes, so several
	// deployments can share a Redis. Default DefaultPrefix ("huddle:").
	// It should not contain '{' or '}', which would change the hash tag.
	Prefix string
}

var _ presence.Store = (*Store)(nil)

// Store is a presence.Store in Redis. It is safe for concurrent use and
// holds no state besides its configuration, so the Stores of many nodes
// may share one Redis; Expire called by several of them at once reports
// each expired member exactly once.
//
// Unlike the memory store, Members leaves out members whose expiry has
// passed even before Expire removes them, and only such live members count
// towards Join's max. It needs Redis 6.2 or later.
type Store struct {
	client rueidis.Client
	prefix string
	now    func() time.Time
}

// New returns a Store keeping members in Redis through client. The caller
// keeps ownership of client and closes it after the Store's last use.
func New(client rueidis.Client, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	return &Store{client: client, prefix: cfg.Prefix, now: time.Now}
}

// Join implements presence.Store.
func (s *Store) Join(ctx context.Context, stream string, m protocol.Member, ttl time.Duration, maxMembers int) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	b, err := msgpack.Marshal(m)
	if err != nil {
		return false, fmt.Errorf("presence/redis: join %q: encode member: %w", stream, err)
	}
	now := s.now()
	exp := now.Add(ttl).UnixMilli()
	args := []string{m.Client, string(b), itoa(exp), itoa(now.UnixMilli()), strconv.Itoa(max(maxMembers, 0)), keyTTL(ttl)}
	res, err := joinScript.Exec(ctx, s.client, s.keys(stream), args).AsInt64()
	if err != nil {
		return false, fmt.Errorf("presence/redis: join %q: %w", stream, err)
	}
	if res == joinFull {
		return false, presence.ErrFull
	}
	if err := s.index(ctx, stream, exp); err != nil {
		return false, fmt.Errorf("presence/redis: join %q: %w", stream, err)
	}
	return res == joinCreated, nil
}

// Update implements presence.Store. It reads the member, applies the patch
// with presence.ApplyPatch, and writes the result only if the member did
// not change meanwhile, retrying otherwise.
func (s *Store) Update(ctx context.Context, stream, client string, patch protocol.Raw, ttl time.Duration, maxState int) (protocol.Raw, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	keys := s.keys(stream)
	for range maxUpdateAttempts {
		cur, err := s.client.Do(ctx, s.client.B().Hget().Key(keys[0]).Field(client).Build()).ToString()
		if rueidis.IsRedisNil(err) {
			return nil, presence.ErrNotMember
		}
		if err != nil {
			return nil, fmt.Errorf("presence/redis: update %q: %w", stream, err)
		}
		var m protocol.Member
		if err := msgpack.Unmarshal([]byte(cur), &m); err != nil {
			return nil, fmt.Errorf("presence/redis: update %q: decode member %q: %w", stream, client, err)
		}
		state, err := presence.ApplyPatch(m.State, patch)
		if err != nil {
			return nil, err
		}
		if maxState > 0 && len(state) > maxState {
			return nil, presence.ErrTooLarge
		}
		m.State = state
		b, err := msgpack.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("presence/redis: update %q: encode member: %w", stream, err)
		}
		exp := s.now().Add(ttl).UnixMilli()
		args := []string{client, cur, string(b), itoa(exp), keyTTL(ttl)}
		res, err := updateScript.Exec(ctx, s.client, keys, args).AsInt64()
		if err != nil {
			return nil, fmt.Errorf("presence/redis: update %q: %w", stream, err)
		}
		switch res {
		case updateGone:
			return nil, presence.ErrNotMember
		case updateDone:
			if err := s.index(ctx, stream, exp); err != nil {
				return nil, fmt.Errorf("presence/redis: update %q: %w", stream, err)
			}
			return state, nil
		}
	}
	return nil, fmt.Errorf("presence/redis: update %q: member %q changed during %d attempts", stream, client, maxUpdateAttempts)
}

// Leave implements presence.Store.
func (s *Store) Leave(ctx context.Context, stream, client string) (protocol.Member, bool, error) {
	if err := ctx.Err(); err != nil {
		return protocol.Member{}, false, err
	}
	b, err := leaveScript.Exec(ctx, s.client, s.keys(stream), []string{client}).ToString()
	if rueidis.IsRedisNil(err) {
		return protocol.Member{}, false, nil
	}
	if err != nil {
		return protocol.Member{}, false, fmt.Errorf("presence/redis: leave %q: %w", stream, err)
	}
	var m protocol.Member
	if err := msgpack.Unmarshal([]byte(b), &m); err != nil {
		return protocol.Member{}, false, fmt.Errorf("presence/redis: leave %q: decode member %q: %w", stream, client, err)
	}
	return m, true, nil
}

// Members implements presence.Store. It leaves out members whose expiry
// has passed.
func (s *Store) Members(ctx context.Context, stream string) ([]protocol.Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := itoa(s.now().UnixMilli())
	raw, err := membersScript.Exec(ctx, s.client, s.keys(stream), []string{now}).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("presence/redis: members of %q: %w", stream, err)
	}
	out := make([]protocol.Member, len(raw))
	for i, b := range raw {
		if err := msgpack.Unmarshal([]byte(b), &out[i]); err != nil {
			return nil, fmt.Errorf("presence/redis: members of %q: decode member: %w", stream, err)
		}
	}
	return out, nil
}

// Touch implements presence.Store.
func (s *Store) Touch(ctx context.Context, stream string, clients []string, ttl time.Duration) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(clients) == 0 {
		return nil, nil
	}
	exp := s.now().Add(ttl).UnixMilli()
	args := make([]string, 0, 2+len(clients))
	args = append(args, itoa(exp), keyTTL(ttl))
	args = append(args, clients...)
	missing, err := touchScript.Exec(ctx, s.client, s.keys(stream), args).AsStrSlice()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, fmt.Errorf("presence/redis: touch %q: %w", stream, err)
	}
	// A shorter ttl than before may bring the earliest expiry forward.
	if err := s.index(ctx, stream, exp); err != nil {
		return missing, fmt.Errorf("presence/redis: touch %q: %w", stream, err)
	}
	return missing, nil
}

// Expire implements presence.Store. It looks only at the streams whose
// index entry is due (at most 1000 per call), removes their expired
// members, and re-indexes them. On an error it still returns the members
// it removed: no other node will report them.
func (s *Store) Expire(ctx context.Context, now time.Time) ([]presence.Gone, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ms := now.UnixMilli()
	c := s.client
	due, err := c.Do(ctx, c.B().Zrangebyscore().Key(s.indexKey()).Min("-inf").Max(itoa(ms)).Limit(0, expireBatch).Build()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("presence/redis: expire: read index: %w", err)
	}
	var (
		gone []presence.Gone
		errs []error
	)
	for _, stream := range due {
		// A failing stream does not stop the others.
		g, err := s.expireStream(ctx, stream, ms)
		gone = append(gone, g...)
		if err != nil {
			errs = append(errs, fmt.Errorf("presence/redis: expire %q: %w", stream, err))
		}
	}
	return gone, errors.Join(errs...)
}

// expireStream removes the expired members of stream and then re-indexes
// it: it deletes the stream's index entry and adds one back from the
// earliest expiry it reads afterwards. A Join that lands meanwhile adds
// its own entry after writing its member, so whatever the interleaving, no
// member is left without an index entry at or before its expiry.
func (s *Store) expireStream(ctx context.Context, stream string, ms int64) ([]presence.Gone, error) {
	keys := s.keys(stream)
	var gone []presence.Gone
	for {
		flat, err := expireScript.Exec(ctx, s.client, keys, []string{itoa(ms), strconv.Itoa(expireBatch)}).AsStrSlice()
		if err != nil {
			return gone, err
		}
		for i := 0; i+1 < len(flat); i += 2 {
			g := presence.Gone{Stream: stream, ClientInfo: protocol.ClientInfo{Client: flat[i]}}
			var m protocol.Member
			if msgpack.Unmarshal([]byte(flat[i+1]), &m) == nil {
				g.User = m.User
			}
			gone = append(gone, g)
		}
		if len(flat) < 2*expireBatch {
			break
		}
	}
	c := s.client
	if err := c.Do(ctx, c.B().Zrem().Key(s.indexKey()).Member(stream).Build()).Error(); err != nil {
		return gone, err
	}
	first, err := c.Do(ctx, c.B().Zrange().Key(keys[1]).Min("0").Max("0").Withscores().Build()).AsZScores()
	if err != nil {
		return gone, err
	}
	if len(first) > 0 {
		if err := s.index(ctx, stream, int64(first[0].Score)); err != nil {
			return gone, err
		}
	}
	return gone, nil
}

// index makes sure the stream's index entry is at or before exp.
func (s *Store) index(ctx context.Context, stream string, exp int64) error {
	c := s.client
	cmd := c.B().Zadd().Key(s.indexKey()).Lt().ScoreMember().ScoreMember(float64(exp), stream).Build()
	if err := c.Do(ctx, cmd).Error(); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// keys returns the stream's member hash and expiry sorted set. The kind
// comes before the hash tag so that no stream name can make one stream's
// key equal another's.
func (s *Store) keys(stream string) []string {
	return []string{
		s.prefix + "presence:{" + stream + "}",
		s.prefix + "presence-expiry:{" + stream + "}",
	}
}

// indexKey names the sorted set of streams by when Expire should look at
// them.
func (s *Store) indexKey() string { return s.prefix + "presence-streams" }

// keyTTL returns the life of a stream's keys after a write with ttl, in
// milliseconds.
func keyTTL(ttl time.Duration) string {
	return itoa((max(ttl, 0) + keyGrace).Milliseconds())
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
