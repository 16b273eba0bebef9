package redis

import (
	"crypto/sha1"
	"encoding/hex"

	"github.com/redis/rueidis"
)

// skipMark starts the error reply of an append that a batch's guard
// refused (see appendScript).
const skipMark = "HUDDLESKIP"

// Every script takes KEYS[1] = the stream's meta hash and KEYS[2] = its
// Redis stream, which share one hash tag and so one Cluster slot, and
// ARGV[1] = a fresh epoch, ARGV[2] = the meta's TTL in ms should the script
// create or refresh the meta.
//
// The meta hash holds epoch (the stream's epoch), offset (the last assigned
// offset) and ttl (the age bound in ms from the latest Append; 0 for none).
// Stream entries have the ID "<offset>-0" and the fields d (data), u
// (user), c (client) and t (append time, unix ms from Redis's clock). The
// entries always hold a contiguous run of offsets ending at the meta's
// offset, or nothing.

// luaCommon defines the helpers the scripts share.
const luaCommon = `
-- meta returns the epoch, last offset and age bound of the stream. When
-- the meta is missing (never created, expired, or evicted) it creates it
-- with the fresh epoch and deletes any entries left in the stream: offsets
-- restart at 1 in the new epoch and must never meet the old entries.
local function meta()
  local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'ttl')
  if m[1] then
    return m[1], tonumber(m[2] or 0), tonumber(m[3] or 0)
  end
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'offset', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return ARGV[1], 0, 0
end

local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function entryid(offset)
  return string.format('%d-0', offset)
end

local function idoffset(id)
  return tonumber(string.match(id, '^(%d+)'))
end

-- field returns the value of field name of an XRANGE entry {id, {f, v, ...}}.
local function field(entry, name)
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == name then return f[i + 1] end
  end
  return nil
end
`

// appendScript assigns the next offset, stores the publication and
// optionally publishes its envelope, all in one atomic step.
//
// ARGV[3] size bound, ARGV[4] age bound in ms (0: none), ARGV[5] data,
// ARGV[6] user, ARGV[7] client, ARGV[8] empty or the publish command
// (PUBLISH or SPUBLISH), ARGV[9] channel, ARGV[10] envelope payload.
// It returns {offset, epoch, time}.
//
// Within a batch (AppendPublishBatch), KEYS[3] is the batch's guard key
// for the stream, ARGV[11] the value the previous item of the same stream
// left in it (empty for the stream's first item: no check) and ARGV[12]
// the value this item leaves for the next one (empty for the stream's
// last item, which deletes the key). An item whose predecessor did not
// leave its value (it failed) stores nothing and fails with skipMark, so
// a failure never leaves a hole in the middle of a stream's run of the
// batch, although the pipeline goes on running the later scripts.
//
// Redis does not roll a failed script back, so the script writes nothing
// before the XADD but what Top would (a new meta), and the offset only
// after the XADD succeeded.
const appendLua = luaCommon + `
if ARGV[11] and ARGV[11] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[11] then
  return redis.error_reply('` + skipMark + ` an earlier item of the stream in the batch failed')
end
local epoch, offset = meta()
offset = offset + 1
local metattl, size, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = nowms()
local off, ms = string.format('%d', offset), string.format('%d', now)
if size > 0 then
  local xadd = {'XADD', KEYS[2], 'MAXLEN', size, off .. '-0',
    'd', ARGV[5], 'u', ARGV[6], 'c', ARGV[7], 't', ms}
  local r = redis.pcall(unpack(xadd))
  if type(r) == 'table' and r.err then
    -- The stream holds IDs the meta does not know, so not this epoch's
    -- history: drop them rather than fail every append from now on.
    redis.call('DEL', KEYS[2])
    redis.call(unpack(xadd))
  end
  -- The entries are worthless once the newest is past the age bound or
  -- the meta is gone, whichever comes first.
  local keep = metattl
  if ttl > 0 and ttl < keep then keep = ttl end
  redis.call('PEXPIRE', KEYS[2], keep)
else
  redis.call('DEL', KEYS[2]) -- the bound may have dropped to 0
end
redis.call('HSET', KEYS[1], 'offset', offset, 'ttl', ttl)
redis.call('PEXPIRE', KEYS[1], metattl)
if ARGV[12] and ARGV[12] ~= '' then
  redis.call('SET', KEYS[3], ARGV[12], 'PX', 60000)
elseif ARGV[11] and ARGV[11] ~= '' then
  redis.call('DEL', KEYS[3])
end
if ARGV[8] ~= '' then
  redis.call(ARGV[8], ARGV[9], off .. ':' .. epoch .. ':' .. ms .. ':' .. ARGV[10])
end
return {offset, epoch, now}
`

var appendScript = rueidis.NewLuaScript(appendLua)

// appendSHA is the SHA1 digest of appendLua, for the EVALSHA of a batch.
var appendSHA = func() string {
	sum := sha1.Sum([]byte(appendLua))
	return hex.EncodeToString(sum[:])
}()

// topScript returns {epoch, offset}, creating the meta if missing. It
// writes only when it creates the meta, so retrying it is safe.
var topScript = rueidis.NewLuaScriptRetryable(luaCommon + `
local epoch, offset = meta()
return {epoch, offset}
`)

// Read statuses, the third element of readScript's reply.
const (
	readIncomplete = 0
	readComplete   = 1
	readMismatch   = 2
)

// readScript answers a Query in one atomic step, so the publications and
// the top it reports belong to one moment.
//
// ARGV[3] the caller's epoch (empty for any), ARGV[4] the caller's offset,
// ARGV[5] limit (0: none), ARGV[6] '1' for newest first. It returns
// {epoch, top, status, more, pubs} where pubs is flat: offset, data, user,
// client, time for each publication.
//
// Entries past the age bound stay in the stream until it expires as a
// whole; the script finds the oldest live one by binary search over the
// contiguous offsets, as append times ascend with offsets.
var readScript = rueidis.NewLuaScriptRetryable(luaCommon + `
local epoch, top, ttl = meta()
if ARGV[3] ~= '' and ARGV[3] ~= epoch then
  return {epoch, top, 2, 0, {}}
end
local after = tonumber(ARGV[4])
if after >= top then
  return {epoch, top, 1, 0, {}}
end
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #head == 0 then
  return {epoch, top, 0, 0, {}}
end
local tail = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local first, last = idoffset(head[1][1]), idoffset(tail[1][1])
if ttl > 0 then
  local cutoff = nowms() - ttl
  if tonumber(field(tail[1], 't')) <= cutoff then
    return {epoch, top, 0, 0, {}}
  end
  if tonumber(field(head[1], 't')) <= cutoff then
    local lo, hi = first, last -- lo is past the bound, hi is not
    while hi - lo > 1 do
      local mid = math.floor((lo + hi) / 2)
      local e = redis.call('XRANGE', KEYS[2], entryid(mid), entryid(mid))
      if #e == 0 or tonumber(field(e[1], 't')) <= cutoff then lo = mid else hi = mid end
    end
    first = hi
  end
end
local start = math.max(after + 1, first)
local count = last - start + 1
if count <= 0 then
  return {epoch, top, 0, 0, {}}
end
local complete = 0
if first <= after + 1 and last == top then complete = 1 end
local more = 0
local limit = tonumber(ARGV[5])
if limit > 0 and count > limit then count, more = limit, 1 end
local entries
if ARGV[6] == '1' then
  entries = redis.call('XREVRANGE', KEYS[2], entryid(last), entryid(start), 'COUNT', count)
else
  entries = redis.call('XRANGE', KEYS[2], entryid(start), entryid(last), 'COUNT', count)
end
local out = {}
for _, e in ipairs(entries) do
  out[#out + 1] = idoffset(e[1])
  out[#out + 1] = field(e, 'd') or ''
  out[#out + 1] = field(e, 'u') or ''
  out[#out + 1] = field(e, 'c') or ''
  out[#out + 1] = tonumber(field(e, 't') or 0)
end
return {epoch, top, complete, more, out}
`)
