-- One round trip per delivery: dedup, delivery log, stored body and arq job, atomically.
-- A delivery is acknowledged (202) only after this script has returned.
--
-- Key names are built here from ARGV[1] (the prefix), so this script assumes a
-- single Redis (or a primary with replicas), not Redis Cluster.
--
-- ARGV:
--  1 prefix            2 provider          3 delivery id       4 now (ms)
--  5 retention (ms)    6 max log entries   7 repository ('' if none)
--  8 mode: 'accept' or 'log'
--  9 entry JSON (the log entry for this attempt)
-- accept mode only:
-- 10 arq job id             11 arq job (serialised)   12 job expiry (ms)
-- 13 arq queue name         14 body blob ('' to keep none)           15 max stored bodies
--
-- Returns {verdict, attempt, first_seen_ms}: verdict 1 accepted, 0 duplicate, 2 logged.

local prefix, provider, delivery_id = ARGV[1], ARGV[2], ARGV[3]
local now, retention, max_entries = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local repository, mode = ARGV[7], ARGV[8]
local ident = provider .. ':' .. delivery_id
local cutoff = now - retention

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
  local counter = prefix .. 'attempts:' .. ident
  local attempt = redis.call('INCR', counter)
  redis.call('PEXPIRE', counter, retention)
  local member = ident .. ':' .. attempt
  redis.call('SET', prefix .. 'delivery:' .. member, entry, 'PX', retention)
  local indexes = {prefix .. 'deliveries', prefix .. 'deliveries:provider:' .. provider}
  if repository ~= '' then
    indexes[3] = prefix .. 'deliveries:repository:' .. string.lower(repository)
  end
  for i, index in ipairs(indexes) do
    redis.call('ZADD', index, now, member)
    redis.call('PEXPIRE', index, retention)
    -- Only the main index deletes entries; the others just forget their members.
    trim(index, max_entries, i == 1 and (prefix .. 'delivery:') or nil)
  end
  return attempt
end

if mode == 'log' then
  return {2, log(ARGV[9]), 0}
end

local seen = prefix .. 'seen:' .. ident
if not redis.call('SET', seen, now, 'NX', 'PX', retention) then
  local first = tonumber(redis.call('GET', seen)) or 0
  -- The same entry, told as a duplicate (store.py writes the accepted one in this exact form).
  local duplicate = string.gsub(ARGV[9], '"verdict":"accepted","status":202,"reason":null',
    '"verdict":"duplicate","status":200,"reason":"delivery id already accepted"', 1)
  return {0, log(duplicate), first}
end

-- arq's own job format: the job under arq:job:<id>, its id in the queue's sorted set.
redis.call('SET', 'arq:job:' .. ARGV[10], ARGV[11], 'PX', tonumber(ARGV[12]))
redis.call('ZADD', ARGV[13], now, ARGV[10])

if ARGV[14] ~= '' then
  local bodies = prefix .. 'bodies'
  redis.call('SET', prefix .. 'body:' .. ident, ARGV[14], 'PX', retention)
  redis.call('ZADD', bodies, now, ident)
  redis.call('PEXPIRE', bodies, retention)
  trim(bodies, tonumber(ARGV[15]), prefix .. 'body:')
end

return {1, log(ARGV[9]), now}
