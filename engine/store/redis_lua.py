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
  elseif status == 'stale' then redis.call('ZADD', p .. 'events:stale', at, jti)
  elseif status == 'failed' then redis.call('ZADD', p .. 'events:failed', at, jti) end
  local last = redis.call('HGET', p .. 'last', webhook)
  if not last or tonumber(last) < tonumber(at) then redis.call('HSET', p .. 'last', webhook, at) end
end
"""

_JOB_INDEX = """
-- An ordered job (`ordered_by:`) is a member of its order chain, the sorted set `order:<order_key>` scored by
-- its event's arrival (ties: creation order, the member's 16-digit prefix). Only the chain's first member is
-- scheduled; when it stops being pending (done or dead) it leaves the chain and the next one is scheduled.
local function index_job(p, id)
  local key = p .. 'job:' .. id
  local status, created = redis.call('HGET', key, 'status'), redis.call('HGET', key, 'created_at')
  local order = redis.call('HGET', key, 'order_key')
  local chain = (order and order ~= '') and (p .. 'order:' .. order) or nil
  local member = chain and redis.call('HGET', key, 'order_member')
  redis.call('ZADD', p .. 'jobs:all', created, id)
  redis.call('ZADD', p .. 'jobs:' .. status, created, id)
  if status == 'pending' then
    local first = true
    if chain then
      redis.call('ZADD', chain, redis.call('HGET', key, 'order_at'), member)
      local head = redis.call('ZRANGE', chain, 0, 1)
      first = head[1] == member
      if first and head[2] then  -- an earlier event's job arrived late: the one it displaces waits again,
        local displaced = string.sub(head[2], 17)  -- unless a worker already has it
        if (redis.call('HGET', p .. 'job:' .. displaced, 'entry') or '') == '' then
          redis.call('ZREM', p .. 'jobs:scheduled', displaced)
        end
      end
    end
    if first then redis.call('ZADD', p .. 'jobs:scheduled', redis.call('HGET', key, 'due_at'), id) end
    if tonumber(redis.call('HGET', key, 'attempts')) > 0 then redis.call('ZADD', p .. 'jobs:failed', created, id) end
  else
    if chain and redis.call('ZREM', chain, member) == 1 then
      local next_member = redis.call('ZRANGE', chain, 0, 0)[1]
      if next_member then
        local next_id = string.sub(next_member, 17)
        local next_key = p .. 'job:' .. next_id
        if redis.call('HGET', next_key, 'status') == 'pending' and (redis.call('HGET', next_key, 'entry') or '') == '' then
          redis.call('ZADD', p .. 'jobs:scheduled', redis.call('HGET', next_key, 'due_at'), next_id)
        end
      end
    end
    if status == 'done' then redis.call('ZADD', p .. 'jobs:done_at', redis.call('HGET', key, 'done_at'), id) end
  end
end
"""

_JOB_UNQUEUE = """
-- Take a job out of the queue: its due-time entry, and its stream entry (acknowledged for the consumer
-- group, then deleted) when a worker holds it or it waits to be read.
local function unqueue_job(p, group, id)
  local key = p .. 'job:' .. id
  redis.call('ZREM', p .. 'jobs:scheduled', id)
  local entry = redis.call('HGET', key, 'entry')
  if entry and entry ~= '' then
    local stream = p .. 'jobs:stream:' .. redis.call('HGET', key, 'destination')
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
    redis.call('HSET', key, 'entry', '')
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

_CREATE_JOBS = _JOB_INDEX + """
-- Jobs from ARGV[first] on, seven values each (id, key, destination, payload, order key or '', its event's
-- arrival, capture ref or ''), pending and due now; a key already queued is skipped (its jobkey mark is set
-- once). An ordered job notes its event's arrival as the newest of its key's captures (kept that long).
local function create_jobs(p, now, first)
  for i = first, #ARGV, 7 do
    local id, key, order, at, ref = ARGV[i], ARGV[i + 1], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
    if redis.call('SET', p .. 'jobkey:' .. key, id, 'NX') then
      redis.call('HSET', p .. 'job:' .. id, 'id', id, 'key', key, 'destination', ARGV[i + 2],
                 'payload', ARGV[i + 3], 'status', 'pending', 'attempts', 0, 'created_at', now, 'due_at', now,
                 'last_error', '', 'last_response', '', 'lease_owner', '')
      if order ~= '' then
        local member = string.format('%016d', redis.call('INCR', p .. 'order:seq')) .. id
        redis.call('HSET', p .. 'job:' .. id, 'order_key', order, 'order_at', at, 'order_member', member)
      end
      index_job(p, id)
    end
    if ref ~= '' then
      local last = redis.call('ZSCORE', p .. 'captures:last', ref)
      if not last or tonumber(last) < tonumber(at) then redis.call('ZADD', p .. 'captures:last', at, ref) end
    end
  end
end
"""

COMPLETE_EVENT = _CREATE_JOBS + """
local p, jti, now = ARGV[1], ARGV[2], ARGV[3]
create_jobs(p, now, 5)
local event_key = p .. 'event:' .. jti
if redis.call('EXISTS', event_key) == 1 then
  redis.call('HSET', event_key, 'status', 'processed', 'decisions', ARGV[4], 'processed_at', now,
             'lease_owner', '')
  redis.call('ZREM', p .. 'events:pending', jti)
  redis.call('ZREM', p .. 'events:lease', jti)
end
"""

FAIL_EVENT = """
-- ARGV: prefix, jti, now, retry_at ('' = give up), decisions. Only a pending event changes.
local p, jti, now, retry_at = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = p .. 'event:' .. jti
if redis.call('HGET', key, 'status') ~= 'pending' then return 0 end
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HSET', key, 'lease_owner', '')
if retry_at ~= '' then
  redis.call('ZADD', p .. 'events:lease', retry_at, jti)  -- the lease end doubles as "not before"
  return 1
end
redis.call('HSET', key, 'status', 'failed', 'decisions', ARGV[5], 'processed_at', now)
redis.call('ZREM', p .. 'events:pending', jti)
redis.call('ZREM', p .. 'events:lease', jti)
redis.call('ZADD', p .. 'events:failed', redis.call('ZSCORE', p .. 'events', jti) or now, jti)
return 1
"""

ENQUEUE_JOBS = _CREATE_JOBS + """
create_jobs(ARGV[1], ARGV[2], 3)
"""

CLAIM_JOBS = """
-- ARGV: prefix, consumer group, owner (the consumer), now, lease in ms, limit, then destinations to skip.
-- 1. Jobs whose due time has come move from the due-time set into their destination's stream (oldest due
--    first), so a stream holds only jobs that may be sent now.
-- 2. Each destination's stream, in turn from a rotating start so no destination starves the others:
--    entries another consumer has held for longer than the lease (it died) are taken over with XAUTOCLAIM,
--    then new entries are read with XREADGROUP. Both leave the entry pending for this consumer until
--    ack/retry/dead acknowledges it, so a job is held by one worker at a time.
local p, group, owner, now, idle, limit = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local skip = {}
for i = 7, #ARGV do skip[ARGV[i]] = true end
local ready = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'jobs:scheduled', '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', p .. 'jobs:scheduled', id)
  local key = p .. 'job:' .. id
  local destination = redis.call('HGET', key, 'destination')
  if destination then
    local stream = p .. 'jobs:stream:' .. destination
    if not ready[destination] then
      redis.call('SADD', p .. 'jobs:destinations', destination)
      redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')  -- BUSYGROUP once it exists
      ready[destination] = true
    end
    redis.call('HSET', key, 'entry', redis.call('XADD', stream, '*', 'job', id))
  end
end
local destinations = redis.call('SMEMBERS', p .. 'jobs:destinations')
table.sort(destinations)
local out, count = {}, #destinations
local function take(stream, entry)  -- an entry whose job was deleted by hand is dropped, not handed out
  local id = entry[2][2]
  if redis.call('EXISTS', p .. 'job:' .. id) == 1 then
    out[#out + 1] = id
  else
    redis.call('XACK', stream, group, entry[1])
    redis.call('XDEL', stream, entry[1])
  end
end
local start = count > 0 and redis.call('INCR', p .. 'jobs:turn') % count or 0
for k = 0, count - 1 do
  if #out >= limit then break end
  local destination = destinations[(start + k) % count + 1]
  if not skip[destination] then
    local stream = p .. 'jobs:stream:' .. destination
    -- From the start of the pending list each time: XAUTOCLAIM looks at up to 10 x COUNT entries, so a dead
    -- worker's entries are found once the older ones live workers hold (at most a batch each) are done.
    local taken = redis.pcall('XAUTOCLAIM', stream, group, owner, idle, '0-0', 'COUNT', limit - #out)
    if taken.err then  -- the stream or its group is gone (keys deleted by hand): forget the destination
      redis.call('SREM', p .. 'jobs:destinations', destination)
    else
      for _, entry in ipairs(taken[2]) do take(stream, entry) end
      for _, gone in ipairs(taken[3] or {}) do redis.call('XACK', stream, group, gone) end
      if #out < limit then
        local read = redis.call('XREADGROUP', 'GROUP', group, owner, 'COUNT', limit - #out, 'STREAMS', stream, '>')
        if read then
          for _, entry in ipairs(read[1][2]) do take(stream, entry) end
        end
      end
    end
  end
end
for _, id in ipairs(out) do redis.call('HSET', p .. 'job:' .. id, 'lease_owner', owner) end
return out
"""

MOVE_JOB = _JOB_INDEX + _JOB_UNQUEUE + """
-- ARGV: prefix, consumer group, id, new status (pending|dead|done), required current status or '',
--       attempts ('+1' or '0'), due_at or '', done_at or '', then field/value pairs to set
local p, group, id, status = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = p .. 'job:' .. id
local current = redis.call('HGET', key, 'status')
if not current or (ARGV[5] ~= '' and current ~= ARGV[5]) then return 0 end
unqueue_job(p, group, id)
for _, set in ipairs({'jobs:pending', 'jobs:failed', 'jobs:dead', 'jobs:done', 'jobs:done_at'}) do
  redis.call('ZREM', p .. set, id)
end
redis.call('HSET', key, 'status', status, 'lease_owner', '')
if ARGV[6] == '+1' then redis.call('HINCRBY', key, 'attempts', 1) else redis.call('HSET', key, 'attempts', 0) end
if ARGV[7] ~= '' then redis.call('HSET', key, 'due_at', ARGV[7]) end
if ARGV[8] ~= '' then redis.call('HSET', key, 'done_at', ARGV[8]) end
for i = 9, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
index_job(p, id)
return 1
"""

DELETE_JOB = _JOB_UNQUEUE + """
-- ARGV: prefix, consumer group, id, required current status or ''
local p, group, id = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'job:' .. id
local current = redis.call('HGET', key, 'status')
if not current or (ARGV[4] ~= '' and current ~= ARGV[4]) then return 0 end
unqueue_job(p, group, id)
redis.call('DEL', p .. 'jobkey:' .. redis.call('HGET', key, 'key'), key)
for _, set in ipairs({'jobs:pending', 'jobs:failed', 'jobs:dead', 'jobs:done', 'jobs:done_at', 'jobs:all'}) do
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
    redis.call('ZREM', p .. 'events:failed', jti)
    removed = removed + 1
  end
end
return {removed, #ids - removed}
"""

_QUARANTINE_DROP = """
-- p quarantine:src:<source> zset: a source's entry ids by arrival; p quarantine:sources zset: source -> entries
local function quarantine_drop(p, id)
  local h = redis.call('HMGET', p .. 'q:' .. id, 'size', 'source')
  if not h[1] then return nil end
  redis.call('DEL', p .. 'q:' .. id)
  redis.call('ZREM', p .. 'quarantine', id)
  local source = h[2] or ''
  if redis.call('ZREM', p .. 'quarantine:src:' .. source, id) == 1 then
    if redis.call('ZINCRBY', p .. 'quarantine:sources', -1, source) + 0 <= 0 then
      redis.call('ZREM', p .. 'quarantine:sources', source)
    end
  end
  redis.call('DECRBY', p .. 'quarantine:bytes', h[1])
  return tonumber(h[1])
end
"""

QUARANTINE_ADD = _QUARANTINE_DROP + """
-- ARGV: prefix, id, webhook, received_at, reason, headers, body, size, max_entries, max_bytes, source
local p, id, source = ARGV[1], ARGV[2], ARGV[11]
local entry_key = p .. 'q:' .. id
if redis.call('EXISTS', entry_key) == 1 then return redis.error_reply('quarantine entry ' .. id .. ' exists') end
redis.call('HSET', entry_key, 'webhook', ARGV[3], 'received_at', ARGV[4], 'reason', ARGV[5], 'headers', ARGV[6],
           'body', ARGV[7], 'size', ARGV[8], 'source', source)
local seq = redis.call('INCR', p .. 'quarantine:seq')
redis.call('ZADD', p .. 'quarantine', seq, id)
redis.call('ZADD', p .. 'quarantine:src:' .. source, seq, id)
redis.call('ZINCRBY', p .. 'quarantine:sources', 1, source)
local total = redis.call('INCRBY', p .. 'quarantine:bytes', ARGV[8])
local evicted, evicted_bytes = 0, 0
while redis.call('ZCARD', p .. 'quarantine') > tonumber(ARGV[9]) or total > tonumber(ARGV[10]) do
  -- the source holding the most entries (the one whose oldest entry is oldest on a tie) gives up its oldest
  local top = redis.call('ZREVRANGE', p .. 'quarantine:sources', 0, 0, 'WITHSCORES')
  local victim, best = nil, nil
  if top[1] then
    for _, s in ipairs(redis.call('ZRANGEBYSCORE', p .. 'quarantine:sources', top[2], top[2])) do
      local first = redis.call('ZRANGE', p .. 'quarantine:src:' .. s, 0, 0, 'WITHSCORES')
      if first[1] and (best == nil or tonumber(first[2]) < best) then victim, best = first[1], tonumber(first[2]) end
    end
  end
  victim = victim or redis.call('ZRANGE', p .. 'quarantine', 0, 0)[1]  -- entries from before sources were kept
  local size = quarantine_drop(p, victim)
  total = tonumber(redis.call('GET', p .. 'quarantine:bytes'))
  evicted, evicted_bytes = evicted + 1, evicted_bytes + size
end
return {evicted, evicted_bytes}
"""

QUARANTINE_REMOVE = _QUARANTINE_DROP + """
local p, id = ARGV[1], ARGV[2]
if quarantine_drop(p, id) == nil then return 0 end
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
-- An ordered job (its hash has an order_key) gets its member of the order chain here, as COMPLETE_EVENT does.
local p, id = ARGV[1], ARGV[2]
if not redis.call('SET', p .. 'jobkey:' .. ARGV[3], id, 'NX') then return 0 end
for i = 4, #ARGV, 2 do redis.call('HSET', p .. 'job:' .. id, ARGV[i], ARGV[i + 1]) end
if (redis.call('HGET', p .. 'job:' .. id, 'order_key') or '') ~= '' then
  local member = string.format('%016d', redis.call('INCR', p .. 'order:seq')) .. id
  redis.call('HSET', p .. 'job:' .. id, 'order_member', member)
end
index_job(p, id)
return 1
"""

UPGRADE_1_TO_2 = """
-- Schema 2 moved the delivery queue onto streams. Jobs that schema 1 held as due or leased go back to the
-- due-time set with their due time; the next claim puts them into their destination's stream.
local p = ARGV[1]
for _, set in ipairs({'jobs:due', 'jobs:leased'}) do
  for _, id in ipairs(redis.call('ZRANGE', p .. set, 0, -1)) do
    local due = redis.call('HGET', p .. 'job:' .. id, 'due_at')
    if due then
      redis.call('ZADD', p .. 'jobs:scheduled', due, id)
      redis.call('HDEL', p .. 'job:' .. id, 'lease_until')
    end
  end
  redis.call('DEL', p .. set)
end
redis.call('SET', p .. 'schema', 2)
return 1
"""

FORGET_CONSUMERS = """
-- ARGV: prefix, consumer group, idle ms. Deletes the group's consumers that hold no entries and have been
-- idle that long (workers of stopped processes), in one script: a consumer deleted while holding entries
-- would take them out of the pending list, so the check and the delete must not be split.
local p, group, idle = ARGV[1], ARGV[2], tonumber(ARGV[3])
local forgotten = 0
for _, destination in ipairs(redis.call('SMEMBERS', p .. 'jobs:destinations')) do
  local stream = p .. 'jobs:stream:' .. destination
  local consumers = redis.pcall('XINFO', 'CONSUMERS', stream, group)
  if not consumers.err then
    for _, fields in ipairs(consumers) do
      local info = {}
      for i = 1, #fields, 2 do info[fields[i]] = fields[i + 1] end
      if info['pending'] == 0 and info['idle'] >= idle then
        redis.call('XGROUP', 'DELCONSUMER', stream, group, info['name'])
        forgotten = forgotten + 1
      end
    end
  end
end
return forgotten
"""
