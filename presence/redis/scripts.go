package redis

import "github.com/redis/rueidis"

// The per-stream scripts take KEYS[1] = the stream's member hash (client ->
// msgpack protocol.Member) and KEYS[2] = its expiry sorted set (client ->
// unix ms). The two keys share the hash tag {stream}, so each script stays
// within one Redis Cluster slot and runs atomically with respect to every
// other change of the stream. Every script keeps the two keys in step: a
// client is in the hash exactly when it is in the sorted set.

// luaKeepAlive extends the life of both keys to ms milliseconds, never
// shortening it: the keys outlive their members by a margin, so that
// members are reported by Expire, not dropped silently by Redis, unless
// every node is gone.
const luaKeepAlive = `
local function keepalive(ms)
  ms = tonumber(ms)
  for _, k in ipairs(KEYS) do
    if redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end
  end
end
`

// Join results.
const (
	joinFull     = -1
	joinReplaced = 0
	joinCreated  = 1
)

// joinScript adds or replaces a member.
//
// ARGV[1] client, ARGV[2] member, ARGV[3] expiry, ARGV[4] now (both unix
// ms), ARGV[5] max live members (0: none), ARGV[6] key TTL in ms. It
// returns joinCreated, joinReplaced or joinFull. Expired members that
// Expire has not removed yet do not count towards max.
var joinScript = rueidis.NewLuaScriptRetryable(luaKeepAlive + `
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if not exists then
  local max = tonumber(ARGV[5])
  if max > 0 and redis.call('ZCOUNT', KEYS[2], ARGV[4], '+inf') >= max then
    return -1
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
keepalive(ARGV[6])
if exists then return 0 end
return 1
`)

// Update results.
const (
	updateGone     = -1
	updateConflict = 0
	updateDone     = 1
)

// updateScript replaces a member only if it is still as the caller read
// it: a compare-and-set, so the state patch computed outside Redis is
// applied atomically.
//
// ARGV[1] client, ARGV[2] member as read, ARGV[3] new member, ARGV[4]
// expiry (unix ms), ARGV[5] key TTL in ms. It returns updateDone,
// updateConflict (the member changed meanwhile) or updateGone.
var updateScript = rueidis.NewLuaScriptRetryable(luaKeepAlive + `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return -1 end
if cur ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
keepalive(ARGV[5])
return 1
`)

// leaveScript removes a member and returns it, or nil if absent. It is not
// retried: a retry after a lost reply would report the member absent.
//
// ARGV[1] client.
var leaveScript = rueidis.NewLuaScript(`
local m = redis.call('HGET', KEYS[1], ARGV[1])
if not m then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return m
`)

// touchScript sets the expiry of those of the given clients that are
// members and returns the others.
//
// ARGV[1] expiry (unix ms), ARGV[2] key TTL in ms, ARGV[3:] clients.
var touchScript = rueidis.NewLuaScriptRetryable(luaKeepAlive + `
local missing = {}
for i = 3, #ARGV do
  if redis.call('ZADD', KEYS[2], 'XX', 'CH', ARGV[1], ARGV[i]) == 0 and not redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    missing[#missing + 1] = ARGV[i]
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then keepalive(ARGV[2]) end
return missing
`)

// membersScript returns the members whose expiry is not before ARGV[1]
// (unix ms).
var membersScript = rueidis.NewLuaScriptRetryable(`
local live = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
local out = {}
for _, c in ipairs(live) do
  local m = redis.call('HGET', KEYS[1], c)
  if m then out[#out + 1] = m end
end
return out
`)

// expireScript removes up to ARGV[2] members whose expiry is before ARGV[1]
// (unix ms) and returns them flat: client, member, client, member, ...
// Because it runs atomically, a member is removed, and so reported, by
// exactly one of the nodes that call it at once. It is not retried: a
// retry after a lost reply would lose the report.
var expireScript = rueidis.NewLuaScript(`
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, c in ipairs(dead) do
  redis.call('ZREM', KEYS[2], c)
  local m = redis.call('HGET', KEYS[1], c)
  redis.call('HDEL', KEYS[1], c)
  out[#out + 1] = c
  out[#out + 1] = m or ''
end
return out
`)
