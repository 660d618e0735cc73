"""The Lua scripts behind engine/store/redis.py. Each multi-step update is one script, so Redis runs it
atomically: two processes can never both claim one event or job, and a racing duplicate never slips in.

Every script takes the key prefix as ARGV[1] and builds its key names from it (the keys of one deployment
share the prefix; see the key map in engine/store/redis.py). Numbers that end up stored (times) are passed
in as strings formatted by Python and stored as given: Lua's own number-to-string conversion keeps only 14
digits, which would round epoch times.
"""

_EVENT_INDEX = """
local function index_event(p, jti, at, status, webhook)
  redis.call('ZADD', p .. 'events', at, jti)
  if status == 'pending' then redis.call('ZADD', p .. 'events:pending', at, jti)
  elseif status == 'stale' then redis.call('ZADD', p .. 'events:stale', at, jti) end
  local last = redis.call('HGET', p .. 'last', webhook)
  if not last or tonumber(last) < tonumber(at) then redis.call('HSET', p .. 'last', webhook, at) end
end
"""

_JOB_INDEX = """
local function index_job(p, id)
  local key = p .. 'job:' .. id
  local status, created = redis.call('HGET', key, 'status'), redis.call('HGET', key, 'created_at')
  redis.call('ZADD', p .. 'jobs:all', created, id)
  redis.call('ZADD', p .. 'jobs:' .. status, created, id)
  if status == 'pending' then
    redis.call('ZADD', p .. 'jobs:due', redis.call('HGET', key, 'due_at'), id)
    if tonumber(redis.call('HGET', key, 'attempts')) > 0 then redis.call('ZADD', p .. 'jobs:failed', created, id) end
  elseif status == 'done' then
    redis.call('ZADD', p .. 'jobs:done_at', redis.call('HGET', key, 'done_at'), id)
  end
end
"""

INGEST = _EVENT_INDEX + """
local p, jti, now = ARGV[1], ARGV[2], ARGV[3]
local seen_key, event_key = p .. 'jti:' .. jti, p .. 'event:' .. jti
local seen = redis.call('GET', seen_key)
if seen and tonumber(seen) >= tonumber(ARGV[4]) then return 'duplicate' end
redis.call('SET', seen_key, now, 'PX', ARGV[5])
if redis.call('EXISTS', event_key) == 1 then return 'duplicate' end
local status, webhook = ARGV[6], ARGV[7]
redis.call('HSET', event_key, 'webhook', webhook, 'iat_ms', ARGV[8], 'received_at', now, 'uris', ARGV[9],
           'body', ARGV[10], 'status', status)
index_event(p, jti, now, status, webhook)
return status
"""

CLAIM_EVENTS = """
local p, owner, now, lease_until, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local out, offset = {}, 0
while #out < limit do
  local batch = redis.call('ZRANGE', p .. 'events:pending', offset, offset + 99)
  if #batch == 0 then break end
  for _, jti in ipairs(batch) do
    local held = redis.call('ZSCORE', p .. 'events:lease', jti)
    if not held or tonumber(held) <= now then
      out[#out + 1] = jti
      if #out >= limit then break end
    end
  end
  offset = offset + #batch
end
for _, jti in ipairs(out) do
  redis.call('ZADD', p .. 'events:lease', lease_until, jti)
  redis.call('HSET', p .. 'event:' .. jti, 'lease_owner', owner)
end
return out
"""

COMPLETE_EVENT = _JOB_INDEX + """
local p, jti, now = ARGV[1], ARGV[2], ARGV[3]
for i = 5, #ARGV, 4 do
  local id, key = ARGV[i], ARGV[i + 1]
  if redis.call('SET', p .. 'jobkey:' .. key, id, 'NX') then
    redis.call('HSET', p .. 'job:' .. id, 'id', id, 'key', key, 'destination', ARGV[i + 2],
               'payload', ARGV[i + 3], 'status', 'pending', 'attempts', 0, 'created_at', now, 'due_at', now,
               'last_error', '', 'last_response', '', 'lease_owner', '')
    index_job(p, id)
  end
end
local event_key = p .. 'event:' .. jti
if redis.call('EXISTS', event_key) == 1 then
  redis.call('HSET', event_key, 'status', 'processed', 'decisions', ARGV[4], 'processed_at', now,
             'lease_owner', '')
  redis.call('ZREM', p .. 'events:pending', jti)
  redis.call('ZREM', p .. 'events:lease', jti)
end
"""

CLAIM_JOBS = """
local p, owner, now, lease_until, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local skip = {}
for i = 6, #ARGV do skip[ARGV[i]] = true end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'jobs:leased', '-inf', ARGV[3])) do
  local due = redis.call('HGET', p .. 'job:' .. id, 'due_at')
  if due then redis.call('ZADD', p .. 'jobs:due', due, id) end
  redis.call('ZREM', p .. 'jobs:leased', id)
end
local out, offset = {}, 0
while #out < limit do
  local batch = redis.call('ZRANGEBYSCORE', p .. 'jobs:due', '-inf', ARGV[3], 'LIMIT', offset, 100)
  if #batch == 0 then break end
  for _, id in ipairs(batch) do
    local destination = redis.call('HGET', p .. 'job:' .. id, 'destination')
    if destination and not skip[destination] then
      out[#out + 1] = id
      if #out >= limit then break end
    end
  end
  offset = offset + #batch
end
for _, id in ipairs(out) do
  redis.call('ZREM', p .. 'jobs:due', id)
  redis.call('ZADD', p .. 'jobs:leased', lease_until, id)
  redis.call('HSET', p .. 'job:' .. id, 'lease_owner', owner, 'lease_until', lease_until)
end
return out
"""

MOVE_JOB = _JOB_INDEX + """
-- ARGV: prefix, id, new status (pending|dead|done), required current status or '', attempts ('+1' or '0'),
--       due_at or '', done_at or '', then field/value pairs to set
local p, id, status = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'job:' .. id
local current = redis.call('HGET', key, 'status')
if not current or (ARGV[4] ~= '' and current ~= ARGV[4]) then return 0 end
for _, set in ipairs({'jobs:due', 'jobs:leased', 'jobs:pending', 'jobs:failed', 'jobs:dead', 'jobs:done',
                      'jobs:done_at'}) do
  redis.call('ZREM', p .. set, id)
end
redis.call('HSET', key, 'status', status, 'lease_owner', '', 'lease_until', '0')
if ARGV[5] == '+1' then redis.call('HINCRBY', key, 'attempts', 1) else redis.call('HSET', key, 'attempts', 0) end
if ARGV[6] ~= '' then redis.call('HSET', key, 'due_at', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', key, 'done_at', ARGV[7]) end
for i = 8, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
index_job(p, id)
return 1
"""

DELETE_JOB = """
-- ARGV: prefix, id, required current status or ''
local p, id = ARGV[1], ARGV[2]
local key = p .. 'job:' .. id
local current = redis.call('HGET', key, 'status')
if not current or (ARGV[3] ~= '' and current ~= ARGV[3]) then return 0 end
redis.call('DEL', p .. 'jobkey:' .. redis.call('HGET', key, 'key'), key)
for _, set in ipairs({'jobs:due', 'jobs:leased', 'jobs:pending', 'jobs:failed', 'jobs:dead', 'jobs:done',
                      'jobs:done_at', 'jobs:all'}) do
  redis.call('ZREM', p .. set, id)
end
return 1
"""

PRUNE_EVENTS = """
-- ARGV: prefix, cutoff, offset, batch. Removes non-pending events received before cutoff;
-- returns {removed, kept} so the caller can page past the pending ones it must keep.
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p .. 'events', '-inf', '(' .. ARGV[2], 'LIMIT', ARGV[3], ARGV[4])
local removed = 0
for _, jti in ipairs(ids) do
  if not redis.call('ZSCORE', p .. 'events:pending', jti) then
    redis.call('DEL', p .. 'event:' .. jti)
    redis.call('ZREM', p .. 'events', jti)
    redis.call('ZREM', p .. 'events:stale', jti)
    removed = removed + 1
  end
end
return {removed, #ids - removed}
"""

QUARANTINE_ADD = """
-- ARGV: prefix, id, webhook, received_at, reason, headers, body, size, max_entries, max_bytes
local p, id = ARGV[1], ARGV[2]
local entry_key = p .. 'q:' .. id
if redis.call('EXISTS', entry_key) == 1 then return redis.error_reply('quarantine entry ' .. id .. ' exists') end
redis.call('HSET', entry_key, 'webhook', ARGV[3], 'received_at', ARGV[4], 'reason', ARGV[5], 'headers', ARGV[6],
           'body', ARGV[7], 'size', ARGV[8])
redis.call('ZADD', p .. 'quarantine', redis.call('INCR', p .. 'quarantine:seq'), id)
local total = redis.call('INCRBY', p .. 'quarantine:bytes', ARGV[8])
local evicted, evicted_bytes = 0, 0
while redis.call('ZCARD', p .. 'quarantine') > tonumber(ARGV[9]) or total > tonumber(ARGV[10]) do
  local oldest = redis.call('ZRANGE', p .. 'quarantine', 0, 0)[1]
  local size = tonumber(redis.call('HGET', p .. 'q:' .. oldest, 'size'))
  redis.call('DEL', p .. 'q:' .. oldest)
  redis.call('ZREM', p .. 'quarantine', oldest)
  total = redis.call('DECRBY', p .. 'quarantine:bytes', size)
  evicted, evicted_bytes = evicted + 1, evicted_bytes + size
end
return {evicted, evicted_bytes}
"""

QUARANTINE_REMOVE = """
local p, id = ARGV[1], ARGV[2]
local size = redis.call('HGET', p .. 'q:' .. id, 'size')
if not size then return 0 end
redis.call('DEL', p .. 'q:' .. id)
redis.call('ZREM', p .. 'quarantine', id)
redis.call('DECRBY', p .. 'quarantine:bytes', size)
return 1
"""

IMPORT_EVENT = _EVENT_INDEX + """
-- ARGV: prefix, jti, then the event hash as field/value pairs (received_at, status and webhook among them)
local p, jti = ARGV[1], ARGV[2]
local key = p .. 'event:' .. jti
if redis.call('EXISTS', key) == 1 then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
local h = redis.call('HMGET', key, 'received_at', 'status', 'webhook')
index_event(p, jti, h[1], h[2], h[3])
return 1
"""

IMPORT_JOB = _JOB_INDEX + """
-- ARGV: prefix, id, key, then the job hash as field/value pairs. Skipped when the key already has a job.
local p, id = ARGV[1], ARGV[2]
if not redis.call('SET', p .. 'jobkey:' .. ARGV[3], id, 'NX') then return 0 end
for i = 4, #ARGV, 2 do redis.call('HSET', p .. 'job:' .. id, ARGV[i], ARGV[i + 1]) end
index_job(p, id)
return 1
"""
