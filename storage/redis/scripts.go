package redis

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/storage"
)

// skipMark starts the error reply of an append that a batch's guard
// refused (see appendScript).
const skipMark = "HUDDLESKIP"

// fullMark starts the error reply of an append to a document at its byte
// cap.
const fullMark = "HUDDLEFULL"

// Every script takes KEYS[1] = the stream's meta hash and KEYS[2] = its
// Redis stream, which share one hash tag and so one Cluster slot, and
// ARGV[1] = a fresh epoch, ARGV[2] = the meta's TTL in ms should the script
// create or refresh the meta (0 for a document: no expiry).
//
// The meta hash holds epoch (the stream's epoch), offset (the last assigned
// offset), ttl (the age bound in ms from the latest Append; 0 for none) and,
// while a byte cap is set, bytes (what the stream's entries count for, as
// storage.Publication.StoredBytes counts).
// Stream entries have the ID "<offset>-0" and the fields d (data), u
// (user), c (client) and t (append time, unix ms from Redis's clock). The
// entries always hold a contiguous run of offsets ending at the meta's
// offset, or nothing.
//
// A document (storage.Options.Document) keeps its keys without expiry and
// its meta hash holds, besides, doc (1), dbytes (what its snapshot and
// entries count for) and, once compacted, snap (the snapshot's data),
// snapoff (its offset) and snapt (when it was stored); its entries are
// then the run from snapoff+1 to the meta's offset.

// luaCommon defines the helpers the scripts share.
var luaCommon = `
local OVERHEAD = ` + strconv.Itoa(storage.PublicationOverhead) + `
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
  if tonumber(ARGV[2]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
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

-- entrybytes returns what an entry counts for against the byte cap.
local function entrybytes(e)
  return #(field(e, 'd') or '') + #(field(e, 'u') or '') + #(field(e, 'c') or '') + OVERHEAD
end

-- walk visits the entries with offsets from 'from' to 'to', oldest first,
-- or newest first from 'from' down to 'to' when rev. It fetches them in
-- pages so that a walk that stops early has not pulled much more into
-- the script's memory than it used: want(n, seen) is the caller's guess of
-- how many more entries it needs after visiting n that counted seen bytes
-- (0 or less ends the walk), and a page holds no more than that, nor more
-- than twice the entries visited so far (at least 2), nor more than 16.
-- visit(e) returns the bytes e counts for, or nil to end the walk.
local function walk(from, to, rev, want, visit)
  local n, seen = 0, 0
  while (rev and from >= to) or (not rev and from <= to) do
    local count = math.min(want(n, seen), math.max(2, 2 * n), 16)
    if count <= 0 then return end
    local es
    if rev then
      es = redis.call('XREVRANGE', KEYS[2], entryid(from), entryid(to), 'COUNT', count)
    else
      es = redis.call('XRANGE', KEYS[2], entryid(from), entryid(to), 'COUNT', count)
    end
    for _, e in ipairs(es) do
      local b = visit(e)
      if not b then return end
      n, seen = n + 1, seen + b
    end
    if #es < count then return end
    local last = idoffset(es[#es][1])
    if rev then from = last - 1 else from = last + 1 end
  end
end

-- fits returns how many more entries of the average size of n entries
-- that counted seen bytes fit in left bytes, plus the one that crosses.
local function fits(n, seen, left)
  if n == 0 then return 1 end
  return math.floor(math.max(left, 0) / math.max(seen / n, 1)) + 1
end
`

// appendScript assigns the next offset, stores the publication and
// optionally publishes its envelope, all in one atomic step.
//
// ARGV[3] size bound, ARGV[4] age bound in ms (0: none), ARGV[5] data,
// ARGV[6] user, ARGV[7] client, ARGV[8] empty or the publish command
// (PUBLISH or SPUBLISH), ARGV[9] channel, ARGV[10] envelope payload,
// ARGV[11] the stream's byte cap (0: none). It returns {offset, epoch,
// time}. A size bound of -1 makes the stream a document: no bound but the
// byte cap, which then refuses the publication with fullMark.
//
// Within a batch (AppendPublishBatch), KEYS[3] is the batch's guard key
// for the stream, ARGV[12] the value the previous item of the same stream
// left in it (empty for the stream's first item: no check) and ARGV[13]
// the value this item leaves for the next one (empty for the stream's
// last item, which deletes the key). An item whose predecessor did not
// leave its value (it failed) stores nothing and fails with skipMark, so
// a failure never leaves a hole in the middle of a stream's run of the
// batch, although the pipeline goes on running the later scripts.
//
// With a byte cap, the script drops the oldest entries itself before the
// XADD, for the count bound as well as for the cap, so that it knows what
// each dropped entry counted for and the meta's bytes stays exact; the
// XADD's MAXLEN then trims nothing. The newest entry is always kept, even
// when it alone is over the cap. A meta without bytes (the cap was off
// until now) is rebuilt by walking the stream once.
//
// Redis does not roll a failed script back, so before the XADD the script
// writes only what Top would (a new meta) and the trimming, which leaves a
// contiguous run ending at the meta's offset and its bytes counted; the
// offset is written only after the XADD succeeded.
var appendLua = luaCommon + `
if ARGV[12] and ARGV[12] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[12] then
  return redis.error_reply('` + skipMark + ` an earlier item of the stream in the batch failed')
end
local epoch, offset = meta()
local metattl, size, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local maxbytes = tonumber(ARGV[11])
local cost = #ARGV[5] + #ARGV[6] + #ARGV[7] + OVERHEAD
local now, off, ms
if size < 0 then
  -- A document: nothing is trimmed or expires, and a publication over
  -- the cap is refused before anything is written.
  local dbytes = tonumber(redis.call('HGET', KEYS[1], 'dbytes') or 0)
  if maxbytes > 0 and dbytes + cost > maxbytes then
    return redis.error_reply('` + fullMark + ` the document is at its size cap of ' .. maxbytes .. ' bytes')
  end
  offset = offset + 1
  now = nowms()
  off, ms = string.format('%d', offset), string.format('%d', now)
  redis.call('XADD', KEYS[2], off .. '-0', 'd', ARGV[5], 'u', ARGV[6], 'c', ARGV[7], 't', ms)
  redis.call('PERSIST', KEYS[2])
  redis.call('HSET', KEYS[1], 'offset', offset, 'ttl', 0, 'doc', 1, 'dbytes', dbytes + cost)
  redis.call('HDEL', KEYS[1], 'bytes')
  redis.call('PERSIST', KEYS[1])
else
local bytes = 0 -- what the entries count for before the XADD
if size > 0 and maxbytes > 0 then
  local len = redis.call('XLEN', KEYS[2])
  if len > 0 then
    -- The entries are a contiguous run ending at the meta's offset; the
    -- head's offset follows without fetching the head, data and all.
    local first = math.max(offset - len + 1, 1)
    bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or -1)
    if bytes < 0 then
      bytes = 0
      walk(first, offset, false, function() return 16 end,
        function(e) bytes = bytes + entrybytes(e); return 0 end)
    end
    local drop, freed, last = 0, 0, 0
    walk(first, offset, false,
      function(n, seen)
        local need, over = len + 1 - size - n, bytes - seen + cost - maxbytes
        if over > 0 then need = math.max(need, fits(n, seen, over)) end
        return need
      end,
      function(e)
        if drop >= len + 1 - size and bytes - freed + cost <= maxbytes then return nil end
        local b = entrybytes(e)
        drop, freed, last = drop + 1, freed + b, idoffset(e[1])
        return b
      end)
    if drop > 0 then
      redis.call('XTRIM', KEYS[2], 'MINID', entryid(last + 1))
      bytes = bytes - freed
      if drop >= len then bytes = 0 end -- nothing left: a drifted count heals
    end
    redis.call('HSET', KEYS[1], 'bytes', bytes)
  end
end
offset = offset + 1
now = nowms()
off, ms = string.format('%d', offset), string.format('%d', now)
if size > 0 then
  local xadd = {'XADD', KEYS[2], 'MAXLEN', size, off .. '-0',
    'd', ARGV[5], 'u', ARGV[6], 'c', ARGV[7], 't', ms}
  local r = redis.pcall(unpack(xadd))
  if type(r) == 'table' and r.err then
    -- The stream holds IDs the meta does not know, so not this epoch's
    -- history: drop them rather than fail every append from now on.
    redis.call('DEL', KEYS[2])
    redis.call(unpack(xadd))
    bytes = 0
  end
  -- The entries are worthless once the newest is past the age bound or
  -- the meta is gone, whichever comes first.
  local keep = metattl
  if ttl > 0 and ttl < keep then keep = ttl end
  redis.call('PEXPIRE', KEYS[2], keep)
else
  redis.call('DEL', KEYS[2]) -- the bound may have dropped to 0
end
if size > 0 and maxbytes > 0 then
  redis.call('HSET', KEYS[1], 'offset', offset, 'ttl', ttl, 'bytes', bytes + cost)
else
  -- Nobody keeps the count up to date now: a later cap rebuilds it.
  redis.call('HSET', KEYS[1], 'offset', offset, 'ttl', ttl)
  redis.call('HDEL', KEYS[1], 'bytes')
end
redis.call('PEXPIRE', KEYS[1], metattl)
end
if ARGV[13] and ARGV[13] ~= '' then
  redis.call('SET', KEYS[3], ARGV[13], 'PX', 60000)
elseif ARGV[12] and ARGV[12] ~= '' then
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
// ARGV[5] limit (0: none), ARGV[6] '1' for newest first, ARGV[7] the cap
// on the summed data bytes (0: none). It returns {epoch, top, status,
// more, pubs, snapped} where pubs is flat: offset, data, user, client,
// time for each publication, and snapped is 1 when the first of them is a
// document's snapshot (a forward read from before its offset).
//
// With a byte cap the entries are fetched in small pages (see walk) rather
// than all at once, so that a read of a window of large publications
// pulls about the cap, not the window, into the script's memory.
//
// Entries past the age bound stay in the stream until it expires as a
// whole; the script finds the oldest live one by binary search over the
// contiguous offsets, as append times ascend with offsets.
var readScript = rueidis.NewLuaScriptRetryable(luaCommon + `
local epoch, top, ttl = meta()
if ARGV[3] ~= '' and ARGV[3] ~= epoch then
  return {epoch, top, 2, 0, {}, 0}
end
local after = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local rev = ARGV[6] == '1'
local maxbytes = tonumber(ARGV[7] or 0)
local out = {}
local snapped = 0 -- out starts with the document's snapshot
local snapoff = tonumber(redis.call('HGET', KEYS[1], 'snapoff') or 0)
if snapoff > 0 and after < snapoff and not rev then
  local sd = redis.call('HMGET', KEYS[1], 'snap', 'snapt')
  out = {snapoff, sd[1] or '', '', '', tonumber(sd[2] or 0)}
  snapped, after = 1, snapoff
  local more = 0
  if after < top then more = 1 end
  if limit == 1 then return {epoch, top, 1, more, out, 1} end
  if limit > 0 then limit = limit - 1 end
  if maxbytes > 0 then
    maxbytes = maxbytes - #out[2]
    if maxbytes <= 0 then return {epoch, top, 1, more, out, 1} end
  end
end
if after >= top then
  return {epoch, top, 1, 0, out, snapped}
end
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #head == 0 then
  return {epoch, top, 0, 0, out, snapped}
end
local tail = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local first, last = idoffset(head[1][1]), idoffset(tail[1][1])
if ttl > 0 then
  local cutoff = nowms() - ttl
  if tonumber(field(tail[1], 't')) <= cutoff then
    return {epoch, top, 0, 0, out, snapped}
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
  return {epoch, top, 0, 0, out, snapped}
end
local complete = 0
if first <= after + 1 and last == top then complete = 1 end
local more = 0
if limit > 0 and count > limit then count, more = limit, 1 end
local function put(e, d)
  out[#out + 1] = idoffset(e[1])
  out[#out + 1] = d
  out[#out + 1] = field(e, 'u') or ''
  out[#out + 1] = field(e, 'c') or ''
  out[#out + 1] = tonumber(field(e, 't') or 0)
end
if maxbytes > 0 then
  local from, to = start, last
  if rev then from, to = last, start end
  local taken, used = snapped, 0
  walk(from, to, rev,
    function(n, seen) return math.min(count - n, fits(n, seen, maxbytes - seen)) end,
    function(e)
      local d = field(e, 'd') or ''
      if taken > 0 and used + #d > maxbytes then
        more = 1
        return nil
      end
      put(e, d)
      taken, used = taken + 1, used + #d
      return #d
    end)
else
  local entries
  if rev then
    entries = redis.call('XREVRANGE', KEYS[2], entryid(last), entryid(start), 'COUNT', count)
  else
    entries = redis.call('XRANGE', KEYS[2], entryid(start), entryid(last), 'COUNT', count)
  end
  for _, e in ipairs(entries) do put(e, field(e, 'd') or '') end
end
return {epoch, top, complete, more, out, snapped}
`)

// compactScript stores a document's snapshot and drops the entries it
// covers, in one atomic step.
//
// ARGV[3] the caller's epoch, ARGV[4] the snapshot's offset, ARGV[5] its
// data. A snapshot is never refused for the document's byte cap: it
// replaces what it covers, and is itself bounded by the largest message a
// client may send. It returns 1 when the snapshot was
// stored, 0 when the document already has one at or past the offset (or
// the offset is 0), 2 when the epoch is not the stream's, 3 when the
// offset is past the top.
var compactScript = rueidis.NewLuaScript(luaCommon + `
local epoch, top = meta()
if ARGV[3] ~= epoch then return 2 end
local at = tonumber(ARGV[4])
if at > top then return 3 end
local snapoff = tonumber(redis.call('HGET', KEYS[1], 'snapoff') or 0)
if at == 0 or snapoff >= at then return 0 end
local dbytes = tonumber(redis.call('HGET', KEYS[1], 'dbytes') or 0)
local freed = 0
local len = redis.call('XLEN', KEYS[2])
if len > 0 then
  local first = math.max(top - len + 1, 1)
  if first <= at then
    walk(first, at, false, function() return 16 end,
      function(e) local b = entrybytes(e); freed = freed + b; return b end)
    redis.call('XTRIM', KEYS[2], 'MINID', entryid(at + 1))
  end
end
if snapoff > 0 then
  freed = freed + #(redis.call('HGET', KEYS[1], 'snap') or '') + OVERHEAD
end
dbytes = math.max(dbytes - freed, 0) + #ARGV[5] + OVERHEAD
redis.call('HSET', KEYS[1], 'snap', ARGV[5], 'snapoff', at, 'snapt', nowms(), 'doc', 1, 'dbytes', dbytes, 'ttl', 0)
redis.call('HDEL', KEYS[1], 'bytes')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
return 1
`)
