-- One round trip per delivery: dedup, delivery log, stored body and arq job, atomically.
-- A delivery is acknowledged (202) only after this script has returned.
--
-- Key stems come from the key schema (handlers/keys.py) and the queue contract
-- (handlers/queue.py); this script only appends ids to them. It touches many keys,
-- so it assumes a single Redis (or a primary with replicas), not Redis Cluster.
--
-- The stems and settings are written into the script when the store is built
-- (store.py), so that each call sends only what changes:
local writes, attempts_stem, delivery_stem = {writes_key}, {attempts_stem}, {delivery_stem}
local deliveries, provider_index_stem = {deliveries_key}, {provider_index_stem}
local repository_index_stem, seen_stem = {repository_index_stem}, {seen_stem}
local bodies, body_stem, job_stem = {bodies_key}, {body_stem}, {job_stem}
local retention, max_entries = {retention}, {max_entries}
local queue, job_expires, max_bodies = {queue}, {job_expires}, {max_bodies}
-- Indexes are trimmed every `period` writes rather than on each one: a script's cost is
-- mostly its calls, and this halves them. An index may so exceed its bound by fewer than
-- `period` members (store.py keeps that under 1% of the bound). Every key gets its expiry
-- when it is written, so none outlives the retention once writes stop.
local period = {period}
-- Each job written wakes a worker waiting for work (handlers/queue.py, WAKE_LUA).
local wake, expires = {wake_key}, job_expires
local function wake_worker()
{wake_lua}
end
--
-- ARGV:
--  1 provider    2 delivery id    3 now (µs)    4 repository ('' if none)
--  5 mode: 'accept', 'replay' or 'log'   6 entry JSON (the log entry for this attempt)
-- accept and replay modes:
--  7 arq job id  8 arq job (serialised)
-- accept mode only:
--  9 body blob ('' to keep none)
--
-- Returns {verdict, attempt, first_seen_ms}: verdict 1 accepted, 0 duplicate, 2 logged.

local provider, delivery_id, score = ARGV[1], ARGV[2], ARGV[3]
local now_us = tonumber(score)
local repository, mode = ARGV[4], ARGV[5]
local ident = provider .. ':' .. delivery_id
-- The log's indexes score in microseconds (arrival order within a millisecond), given as the
-- argument's own text (Lua would print a 16-digit number with 14); the dedup key and arq's
-- queue keep milliseconds.
local now = math.floor(now_us / 1000)
local cutoff = now_us - retention * 1000
local housekeeping = true
if period > 1 then
  local count = redis.call('INCR', writes)
  housekeeping = count % period == 0
  -- A new counter expires too (nothing here outlives the retention without writes).
  if housekeeping or count == 1 then
    redis.call('PEXPIRE', writes, retention)
  end
end

-- Keep an index to its retention window and its size; delete the entries that fall out.
local function trim(index, max, value_prefix)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', cutoff)
  local over = redis.call('ZCARD', index) - max
  if over > 0 then
    if value_prefix then
      local old = redis.call('ZRANGE', index, 0, over - 1)
      for _, member in ipairs(old) do
        redis.call('DEL', value_prefix .. member)
      end
    end
    redis.call('ZREMRANGEBYRANK', index, 0, over - 1)
  end
end

local function log(entry)
  local counter = attempts_stem .. ident
  local attempt = redis.call('INCR', counter)
  redis.call('PEXPIRE', counter, retention)
  local member = ident .. ':' .. attempt
  redis.call('SET', delivery_stem .. member, entry, 'PX', retention)
  local indexes = {deliveries, provider_index_stem .. provider}
  if repository ~= '' then
    indexes[3] = repository_index_stem .. string.lower(repository)
  end
  for i, index in ipairs(indexes) do
    redis.call('ZADD', index, score, member)
    -- Each index expires from its own last write: one that stops being written (a repository
    -- seen once a week, a provider no longer used) goes with its newest member.
    redis.call('PEXPIRE', index, retention)
    if housekeeping then
      -- Only the main index deletes entries; the others just forget their members.
      trim(index, max_entries, i == 1 and delivery_stem or nil)
    end
  end
  return attempt
end

if mode == 'log' then
  return {2, log(ARGV[6]), 0}
end

-- A delivery accepted before, queued again on request (the admin API's replay): it passed
-- dedup once, its body is stored already; the worker's result is the same however often it runs.
if mode == 'replay' then
  redis.call('SET', job_stem .. ARGV[7], ARGV[8], 'PX', job_expires)
  redis.call('ZADD', queue, now, ARGV[7])
  wake_worker()
  return {1, log(ARGV[6]), now}
end

local seen = seen_stem .. ident
if not redis.call('SET', seen, now, 'NX', 'PX', retention) then
  local first = tonumber(redis.call('GET', seen)) or 0
  -- The same entry, told as a duplicate (store.py writes the accepted one in this exact form).
  local duplicate = string.gsub(ARGV[6], '"verdict":"accepted","status":202,"reason":null',
    '"verdict":"duplicate","status":200,"reason":"delivery id already accepted"', 1)
  return {0, log(duplicate), first}
end

-- arq's own job format: the job under arq:job:<id>, its id in the queue's sorted set.
redis.call('SET', job_stem .. ARGV[7], ARGV[8], 'PX', job_expires)
redis.call('ZADD', queue, now, ARGV[7])
wake_worker()

if ARGV[9] ~= '' then
  redis.call('SET', body_stem .. ident, ARGV[9], 'PX', retention)
  redis.call('ZADD', bodies, score, ident)
  redis.call('PEXPIRE', bodies, retention)
  if housekeeping then
    trim(bodies, max_bodies, body_stem)
  end
end

return {1, log(ARGV[6]), now}
