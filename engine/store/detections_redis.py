"""State of `sequence`, `new_value` and `absence` rules in Redis: a mixin for RedisStore (which provides
`redis`, `prefix`, `_guard` and `_state_script`), implementing engine.store.state.DetectionStateStore.

Key map (p = the deployment's prefix):

    p st:q:<rule>:<group>     string  a group's sequence state (JSON, engine/store/sequence.py)
    p st:qx:<rule>            zset    group -> when its sequence state expires (max_groups count, pruning)
    p st:qrules               set     rules that hold sequences
    p st:ng:<rule>:<group>    hash    a new_value group: since, last, jti (of its last NEW verdict)
    p st:nv:<rule>:<group>    zset    value -> until (seen + lookback): the group's known values
    p st:nx:<rule>            zset    group -> when the group expires (max_groups count, pruning)
    p st:nrules               set     rules that hold new_value groups
    p st:t:<rule>:<group>     hash    an absence timer: due, started, payload
    p st:tq                   zset    "<rule>\\n<group>" -> when to hand it out (due, or the end of a claim)
    p st:tn                   hash    rule -> number of timers (max_timers)

A sequence update is WATCH/GET, the shared pure logic, then MULTI/SET/EXEC (retried on a concurrent
change), like a threshold window. new_value verdicts and every timer operation are Lua scripts: one atomic
step each, so two processes never both see a value as new, and a due timer is claimed by exactly one
process (claiming moves its score to the end of the lease; a claimer that dies lets it come due again).
"""

from __future__ import annotations

import json
from typing import Any

from engine.store import sequence
from engine.store.state import (CAPPED, NewValueLimits, NewValueResult, SequenceEvent, SequenceLimits, SequenceResult,
                                Timer)
from engine.store.redis_records import num as _num
from engine.store.state_redis import PRUNE_INDEX, update_group_state

NEW_VALUE = """
-- KEYS: group hash, values zset, rule's group index, the rules set; ARGV: value, jti, time, lookback,
-- learn_for, max_values, max_groups, now, group key, key prefix of the rule's groups ('<p>st:ng:<rule>:'),
-- of its values, the rule
local g, v, x = KEYS[1], KEYS[2], KEYS[3]
redis.call('SADD', KEYS[4], ARGV[12])
local value, jti, t = ARGV[1], ARGV[2], tonumber(ARGV[3])
local lookback, learn, maxv, maxg = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local since = redis.call('HGET', g, 'since')
local last
if not since then
  if redis.call('ZCARD', x) >= maxg then
    for _, old in ipairs(redis.call('ZRANGEBYSCORE', x, '-inf', '(' .. ARGV[8], 'LIMIT', 0, 1000)) do
      redis.call('DEL', ARGV[10] .. old, ARGV[11] .. old)
      redis.call('ZREM', x, old)
    end
    if redis.call('ZCARD', x) >= maxg then return {'capped', '0', 0} end
  end
  since, last = t, t
  redis.call('HSET', g, 'since', ARGV[3])
else
  since = tonumber(since)
  last = tonumber(redis.call('HGET', g, 'last') or since)
  if redis.call('HGET', g, 'jti') == jti then return {'replayed', tostring(since), 0} end
  if last + lookback < t then
    redis.call('DEL', v)
    since = t
    redis.call('HSET', g, 'since', ARGV[3])
  end
end
local status, evicted = 'known', 0
local untl = redis.call('ZSCORE', v, value)
if untl and tonumber(untl) >= t then
  if t + lookback > tonumber(untl) then redis.call('ZADD', v, t + lookback, value) end
else
  redis.call('ZADD', v, t + lookback, value)
  redis.call('ZREMRANGEBYSCORE', v, '-inf', '(' .. ARGV[3])
  local held = redis.call('ZCARD', v)
  if held > maxv then
    local oldest = redis.call('ZRANGE', v, 0, held - maxv)
    for _, old in ipairs(oldest) do
      if old ~= value and evicted < held - maxv then
        redis.call('ZREM', v, old)
        evicted = evicted + 1
      end
    end
  end
  if t - since < learn then status = 'learning' else
    status = 'new'
    redis.call('HSET', g, 'jti', jti)
  end
end
if t > last then last = t end
redis.call('HSET', g, 'last', tostring(last))
redis.call('ZADD', x, last + lookback, ARGV[9])
return {status, tostring(since), evicted}
"""

TIMER_START = """
-- KEYS: timer hash, queue, counts; ARGV: due, started, payload, max_timers, member, rule
if redis.call('EXISTS', KEYS[1]) == 1 then return 'running' end
if tonumber(redis.call('HGET', KEYS[3], ARGV[6]) or '0') >= tonumber(ARGV[4]) then return 'capped' end
redis.call('HSET', KEYS[1], 'due', ARGV[1], 'started', ARGV[2], 'payload', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[5])
redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
return 'started'
"""

TIMER_STOP = """
-- KEYS: timer hash, queue, counts; ARGV: member, rule, due ('' = any)
local due = redis.call('HGET', KEYS[1], 'due')
if not due or (ARGV[3] ~= '' and tonumber(due) ~= tonumber(ARGV[3])) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[2], -1)
return 1
"""

TIMERS_CLAIM = """
-- KEYS: queue; ARGV: now, now + lease, limit, key prefix of timer hashes ('<p>st:t:')
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local cut = string.find(member, '\\n', 1, true)
  local fields = redis.call('HMGET', ARGV[4] .. string.sub(member, 1, cut - 1) .. ':' .. string.sub(member, cut + 1),
                            'due', 'started', 'payload')
  if fields[1] then
    redis.call('ZADD', KEYS[1], ARGV[2], member)
    table.insert(out, {member, fields[1], fields[2], fields[3]})
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return out
"""


class RedisDetectionMixin:
    """DetectionStateStore for RedisStore."""

    redis: Any
    prefix: str
    _guard: Any
    _state_script: Any

    # -- sequences ---------------------------------------------------------------------------------
    def sequence_offer(self, rule_id: str, group_key: str, event: SequenceEvent,
                       spec: SequenceLimits, now: float) -> SequenceResult:
        key, index = f"{self.prefix}st:q:{rule_id}:{group_key}", f"{self.prefix}st:qx:{rule_id}"
        with self._guard("updating a sequence"):
            result = update_group_state(
                self.redis, key, index, group_key, f"{self.prefix}st:qrules", rule_id,
                has_room=lambda: self._sequence_room(rule_id, spec.max_groups, now),
                offer=lambda state: sequence.offer(state, event, spec),
                expires_at=lambda state: sequence.expires_at(state, spec))
        return SequenceResult(CAPPED) if result is None else result

    def _sequence_room(self, rule_id: str, cap: int, now: float) -> bool:
        index = f"{self.prefix}st:qx:{rule_id}"
        if self.redis.zcard(index) < cap:
            return True
        self._prune_index(index, f"{self.prefix}st:q:{rule_id}:", now, f"{self.prefix}st:qrules", rule_id)
        return self.redis.zcard(index) < cap

    def _prune_index(self, index: str, prefix: str, now: float, rules: str, rule_id: str) -> int:
        removed, args = 0, [prefix, f"({_num(now)}", rules, rule_id]
        while (batch := self._state_script(PRUNE_INDEX)(keys=[index], args=args)):
            removed += batch
        return removed

    # -- new values --------------------------------------------------------------------------------
    def new_value_seen(self, rule_id: str, group_key: str, value: str, jti: str, time: float,
                       spec: NewValueLimits, now: float) -> NewValueResult:
        p = self.prefix
        with self._guard("checking a new value"):
            status, since, evicted = self._state_script(NEW_VALUE)(
                keys=[f"{p}st:ng:{rule_id}:{group_key}", f"{p}st:nv:{rule_id}:{group_key}", f"{p}st:nx:{rule_id}",
                      f"{p}st:nrules"],
                args=[value, jti, _num(time), _num(spec.lookback), _num(spec.learn_for), spec.max_values,
                      spec.max_groups, _num(now), group_key, f"{p}st:ng:{rule_id}:", f"{p}st:nv:{rule_id}:", rule_id])
        return NewValueResult(status.decode(), float(since), int(evicted))

    # -- absence timers ----------------------------------------------------------------------------
    def _timer_keys(self, rule_id: str, group_key: str) -> list[str]:
        return [f"{self.prefix}st:t:{rule_id}:{group_key}", f"{self.prefix}st:tq", f"{self.prefix}st:tn"]

    def timer_start(self, rule_id: str, group_key: str, due_at: float, started: float,
                    payload: dict[str, Any], max_timers: int) -> str:
        with self._guard("starting an absence timer"):
            return self._state_script(TIMER_START)(
                keys=self._timer_keys(rule_id, group_key),
                args=[_num(due_at), _num(started), json.dumps(payload), max_timers, f"{rule_id}\n{group_key}",
                      rule_id]).decode()

    def timer_cancel(self, rule_id: str, group_key: str) -> bool:
        with self._guard("cancelling an absence timer"):
            return bool(self._state_script(TIMER_STOP)(keys=self._timer_keys(rule_id, group_key),
                                                       args=[f"{rule_id}\n{group_key}", rule_id, ""]))

    def timers_claim(self, now: float, lease: float, limit: int) -> list[Timer]:
        with self._guard("claiming due absence timers"):
            rows = self._state_script(TIMERS_CLAIM)(keys=[f"{self.prefix}st:tq"],
                                                    args=[_num(now), _num(now + lease), limit, f"{self.prefix}st:t:"])
        timers = []
        for member, due, started, payload in rows:
            rule_id, group_key = member.decode().split("\n", 1)
            timers.append(Timer(rule_id, group_key, float(due), float(started), json.loads(payload)))
        return timers

    def timers_done(self, timers: list[Timer]) -> None:
        script = self._state_script(TIMER_STOP)
        with self._guard("forgetting fired absence timers"), self.redis.pipeline(transaction=False) as pipe:
            for timer in timers:
                script(keys=self._timer_keys(timer.rule_id, timer.group_key),
                       args=[f"{timer.rule_id}\n{timer.group_key}", timer.rule_id, _num(timer.due_at)], client=pipe)
            pipe.execute()

    # -- pruning -----------------------------------------------------------------------------------
    def prune_detections(self, now: float) -> int:
        """Delete timed-out sequences and new_value groups with nothing within their lookback."""
        p, removed = self.prefix, 0
        with self._guard("pruning sequence and new_value state"):
            for rule in self.redis.smembers(f"{p}st:qrules"):
                rule_id = rule.decode()
                removed += self._prune_index(f"{p}st:qx:{rule_id}", f"{p}st:q:{rule_id}:", now,
                                             f"{p}st:qrules", rule_id)
            for rule in self.redis.smembers(f"{p}st:nrules"):
                rule_id = rule.decode()
                index = f"{p}st:nx:{rule_id}"
                for group in self.redis.zrangebyscore(index, "-inf", f"({_num(now)}"):
                    self.redis.delete(f"{p}st:nv:{rule_id}:{group.decode()}")
                removed += self._prune_index(index, f"{p}st:ng:{rule_id}:", now, f"{p}st:nrules", rule_id)
        return removed
