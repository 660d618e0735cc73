"""Stateful-rule state in Redis: a mixin for RedisStore (which provides `redis`, `prefix` and `_guard`).

Key map (p = the deployment's prefix; rule ids are [a-z0-9-], so ':' separates safely):

    p st:w:<rule>:<group>     string  a group's window state (JSON, engine/match/stateful/window.py)
    p st:wx:<rule>            zset    group -> when its window expires (the max_groups count and pruning)
    p st:rules                set     rules that hold windows (pruning visits them)
    p st:s:<rule>:<group>     string  "<until>\\n<token>" of an active suppression
    p st:sx                   zset    "<rule>:<group>" -> until (pruning)
    p st:dp:<rule>            zset    digest period start -> due_at
    p st:dm:<rule>:<start>    hash    total, end of one digest period
    p st:di:<rule>:<start>    hash    jti -> [time, item] of one period (at most max_items fields)

A window update is WATCH/GET, then the shared pure logic, then MULTI/SET/EXEC (retried when another
process changed that group meanwhile), so no count is lost. Suppression, digest additions and pruning are
Lua scripts. Times are the callers' `now`, never Redis TIME or key TTLs, so an injected clock controls
everything exactly as with SQLite.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from engine.store import window
from engine.store.state import CAPPED, DigestBatch, Threshold, WindowEntry, WindowResult
from engine.store.redis_records import num as _num

try:
    from redis.exceptions import WatchError
except ImportError:  # pragma: no cover - RedisStore already reports the missing package
    WatchError = Exception  # type: ignore[assignment,misc]  # never raised without redis

SUPPRESS_TRY = """
local key, ends, now, token = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local held = redis.call('GET', key)
if held then
  local cut = string.find(held, '\\n', 1, true)
  if tonumber(string.sub(held, 1, cut - 1)) > now then
    if string.sub(held, cut + 1) == token then return 1 end
    return 0
  end
end
redis.call('SET', key, ends .. '\\n' .. token)
redis.call('ZADD', KEYS[2], ends, ARGV[4])
return 1
"""

DIGEST_ADD = """
local items, meta, periods = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HEXISTS', items, ARGV[1]) == 1 then return 0 end
if redis.call('HLEN', items) < tonumber(ARGV[3]) then redis.call('HSET', items, ARGV[1], ARGV[2]) end
redis.call('HINCRBY', meta, 'total', 1)
redis.call('HSET', meta, 'end', ARGV[4])
redis.call('ZADD', periods, ARGV[5], ARGV[6])
return 1
"""

PRUNE_INDEX = """
-- KEYS[1]: an index zset; ARGV[1]: key prefix of the members' keys; ARGV[2]: '(' .. now or now; ARGV[3]:
-- the rules set and ARGV[4] the rule, to forget a rule whose windows are all gone ('' for suppressions)
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, 500)
for _, member in ipairs(members) do
  redis.call('DEL', ARGV[1] .. member)
  redis.call('ZREM', KEYS[1], member)
end
if ARGV[3] ~= '' and redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', ARGV[3], ARGV[4]) end
return #members
"""


def update_group_state(redis: Any, key: str, index: str, group_key: str, rules: str, rule_id: str, *,
                       has_room: Callable[[], bool], offer: Callable[[Any], tuple[Any, Any]],
                       expires_at: Callable[[Any], float]) -> Any:
    """Change one group's JSON state of a rule (a threshold window, a sequence) under WATCH, and keep the
    rule's expiry index (`index`, group -> when the state ends) and the set of rules with state (`rules`) in
    step. `offer(state)` returns (the new state or None to drop it, the result). None when the group is new
    and `has_room()` says the rule holds as many groups as it may."""
    with redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                if raw is None and not has_room():
                    return None
                state, result = offer(json.loads(raw) if raw else None)
                pipe.multi()
                if state is None:
                    pipe.delete(key)
                    pipe.zrem(index, group_key)
                else:
                    pipe.set(key, json.dumps(state))
                    pipe.zadd(index, {group_key: expires_at(state)})
                    pipe.sadd(rules, rule_id)
                pipe.execute()
                return result
            except WatchError:
                continue


class RedisStateMixin:
    """engine.match.stateful.state.StateStore for RedisStore."""

    redis: Any
    prefix: str
    _guard: Any
    prune_detections: Any

    def _state_script(self, source: str) -> Any:
        scripts = self.__dict__.setdefault("_state_scripts", {})
        if source not in scripts:
            scripts[source] = self.redis.register_script(source)
        return scripts[source]

    # -- threshold windows -------------------------------------------------------------------------
    def window_add(self, rule_id: str, group_key: str, entry: WindowEntry, spec: Threshold,
                   now: float) -> WindowResult:
        key, index = f"{self.prefix}st:w:{rule_id}:{group_key}", f"{self.prefix}st:wx:{rule_id}"
        with self._guard("updating a threshold window"):
            result = update_group_state(
                self.redis, key, index, group_key, f"{self.prefix}st:rules", rule_id,
                has_room=lambda: self._has_room(rule_id, spec.max_groups, now),
                offer=lambda state: window.offer(state, entry, spec, now),
                expires_at=lambda state: window.expires_at(state, spec))
        return WindowResult(CAPPED) if result is None else result

    def _has_room(self, rule_id: str, cap: int, now: float) -> bool:
        index = f"{self.prefix}st:wx:{rule_id}"
        if self.redis.zcard(index) < cap:
            return True
        self._prune_windows(rule_id, now)
        return self.redis.zcard(index) < cap

    def _prune_windows(self, rule_id: str, now: float) -> int:
        removed, args = 0, [f"{self.prefix}st:w:{rule_id}:", f"({_num(now)}", f"{self.prefix}st:rules", rule_id]
        while (batch := self._state_script(PRUNE_INDEX)(keys=[f"{self.prefix}st:wx:{rule_id}"], args=args)):
            removed += batch
        return removed

    # -- suppression -------------------------------------------------------------------------------
    def suppress_try(self, rule_id: str, group_key: str, until: float, now: float, token: str) -> bool:
        member = f"{rule_id}:{group_key}"
        with self._guard("checking a suppression"):
            return bool(self._state_script(SUPPRESS_TRY)(
                keys=[f"{self.prefix}st:s:{member}", f"{self.prefix}st:sx"],
                args=[_num(until), _num(now), token, member]))

    # -- digests -----------------------------------------------------------------------------------
    def _digest_keys(self, rule_id: str, period_start: float) -> list[str]:
        start = _num(period_start)
        return [f"{self.prefix}st:di:{rule_id}:{start}", f"{self.prefix}st:dm:{rule_id}:{start}",
                f"{self.prefix}st:dp:{rule_id}"]

    def digest_add(self, rule_id: str, period_start: float, period_end: float, due_at: float,
                   jti: str, time: float, item: dict[str, Any], max_items: int) -> bool:
        with self._guard("adding to a digest"):
            return bool(self._state_script(DIGEST_ADD)(
                keys=self._digest_keys(rule_id, period_start),
                args=[jti, json.dumps([time, item]), max_items, _num(period_end), _num(due_at), _num(period_start)]))

    def digest_due(self, rule_id: str, now: float) -> list[DigestBatch]:
        with self._guard("reading due digests"):
            starts = self.redis.zrangebyscore(f"{self.prefix}st:dp:{rule_id}", "-inf", _num(now))
            return sorted((self._digest_batch(rule_id, float(start)) for start in starts),
                          key=lambda batch: batch.period_start)

    def _digest_batch(self, rule_id: str, start: float) -> DigestBatch:
        items_key, meta_key, _ = self._digest_keys(rule_id, start)
        items = sorted((json.loads(raw) + [jti] for jti, raw in self.redis.hgetall(items_key).items()),
                       key=lambda entry: (entry[0], entry[2]))
        meta = self.redis.hgetall(meta_key)
        return DigestBatch(start, float(meta[b"end"]), [entry[1] for entry in items], int(meta[b"total"]))

    def digest_done(self, rule_id: str, period_start: float) -> None:
        items_key, meta_key, periods = self._digest_keys(rule_id, period_start)
        with self._guard("forgetting a sent digest"), self.redis.pipeline() as pipe:
            pipe.delete(items_key, meta_key)
            pipe.zrem(periods, _num(period_start))
            pipe.execute()

    # -- migration (idhooks migrate) ---------------------------------------------------------------
    def import_window(self, rule_id: str, group_key: str, state: str, expires_at: float) -> bool:
        """Copy a group's window (its JSON state as stored); False when this deployment has one already."""
        key = f"{self.prefix}st:w:{rule_id}:{group_key}"
        with self._guard("copying a threshold window"):
            if not self.redis.set(key, state, nx=True):
                return False
            self.redis.zadd(f"{self.prefix}st:wx:{rule_id}", {group_key: expires_at})
            self.redis.sadd(f"{self.prefix}st:rules", rule_id)
        return True

    def import_suppression(self, rule_id: str, group_key: str, until: float, token: str) -> bool:
        """Copy an active suppression; False when this deployment has one for that group already."""
        member = f"{rule_id}:{group_key}"
        with self._guard("copying a suppression"):
            if not self.redis.set(f"{self.prefix}st:s:{member}", f"{_num(until)}\n{token}", nx=True):
                return False
            self.redis.zadd(f"{self.prefix}st:sx", {member: until})
        return True

    def import_digest_total(self, rule_id: str, period_start: float, total: int) -> None:
        """Set a copied digest period's match count (digest_add() counts only the items it was given)."""
        with self._guard("copying a digest"):
            self.redis.hset(self._digest_keys(rule_id, period_start)[1], "total", total)

    # -- size --------------------------------------------------------------------------------------
    def prune_state(self, now: float) -> int:
        with self._guard("pruning stateful-rule state"):
            removed = sum(self._prune_windows(rule.decode(), now)
                          for rule in self.redis.smembers(f"{self.prefix}st:rules"))
            args = [f"{self.prefix}st:s:", _num(now), "", ""]
            while (batch := self._state_script(PRUNE_INDEX)(keys=[f"{self.prefix}st:sx"], args=args)):
                removed += batch
        return removed + self.prune_detections(now)

    def state_size(self) -> int:
        with self._guard("measuring stateful-rule state"):
            return sum(1 for _ in self.redis.scan_iter(match=f"{self.prefix}st:*", count=1000))
