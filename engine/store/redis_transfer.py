"""`idhooks migrate` out of RedisStore (engine/store/transfer.py): the exports, a mixin using its `redis`,
`prefix`, `_guard()` and `_hashes()` (the imports are in redis.py and state_redis.py). Key map: redis.py and
state_redis.py."""

from __future__ import annotations

import json
from typing import Any, Iterator

from engine.store.base import Job, StoredEvent
from engine.store.redis_records import event_from_hash, job_from_hash, num
from engine.store.transfer import PAGE, DigestPeriod, SuppressionRecord, WindowRecord


class RedisTransferMixin:
    redis: Any
    prefix: str
    _guard: Any
    _hashes: Any

    def _scored(self, key: str, low: str, high: str = "+inf") -> Iterator[tuple[bytes, float]]:
        """(member, score) of a sorted set between `low` and `high`, by score, PAGE at a time."""
        offset = 0
        while True:
            with self._guard(f"exporting {key}"):
                page = self.redis.zrangebyscore(self.prefix + key, low, high, start=offset, num=PAGE, withscores=True)
            yield from page
            if len(page) < PAGE:
                return
            offset += len(page)

    def export_events(self, since: float) -> Iterator[StoredEvent]:
        """Pending events older than `since` first (they are older than the rest), then everything newer."""
        for key, low, high in (("events:pending", "-inf", f"({num(since)}"), ("events", num(since), "+inf")):
            batch: list[bytes] = []
            for jti, _ in self._scored(key, low, high):
                batch.append(jti)
                if len(batch) == PAGE:
                    yield from (event_from_hash(j, h) for j, h in self._hashes("event", batch))
                    batch = []
            yield from (event_from_hash(j, h) for j, h in self._hashes("event", batch))

    def export_jobs(self) -> Iterator[tuple[Job, float | None]]:
        ids = [job_id for job_id, _ in self._scored("jobs:all", "-inf")]
        for start in range(0, len(ids), PAGE):
            for _, h in self._hashes("job", ids[start:start + PAGE]):
                yield job_from_hash(h), float(h[b"done_at"]) if h.get(b"done_at") else None

    def export_windows(self, now: float) -> Iterator[WindowRecord]:
        with self._guard("exporting threshold windows"):
            rules = sorted(rule.decode() for rule in self.redis.smembers(self.prefix + "st:rules"))
        for rule in rules:
            for group, expires_at in self._scored(f"st:wx:{rule}", f"({num(now)}"):
                with self._guard("exporting a threshold window"):
                    state = self.redis.get(f"{self.prefix}st:w:{rule}:{group.decode()}")
                if state is not None:
                    yield WindowRecord(rule, group.decode(), state.decode(), expires_at)

    def export_suppressions(self, now: float) -> Iterator[SuppressionRecord]:
        for member, _ in self._scored("st:sx", f"({num(now)}"):
            rule, group = member.decode().split(":", 1)  # rule ids never hold ':'
            with self._guard("exporting a suppression"):
                held = self.redis.get(f"{self.prefix}st:s:{member.decode()}")
            if held is not None:
                until, token = held.decode().split("\n", 1)
                yield SuppressionRecord(rule, group, float(until), token)

    def export_digests(self) -> Iterator[DigestPeriod]:
        head = f"{self.prefix}st:dp:"
        with self._guard("listing digests"):
            rules = sorted(key.decode()[len(head):] for key in self.redis.scan_iter(match=head + "*", count=1000))
        for rule in rules:
            for start, due_at in self._scored(f"st:dp:{rule}", "-inf"):
                with self._guard("exporting a digest"):
                    meta = self.redis.hgetall(f"{self.prefix}st:dm:{rule}:{start.decode()}")
                    raw = self.redis.hgetall(f"{self.prefix}st:di:{rule}:{start.decode()}")
                items = sorted(((jti.decode(), *json.loads(value)) for jti, value in raw.items()),
                               key=lambda entry: (entry[1], entry[0]))
                yield DigestPeriod(rule, float(start), float(meta[b"end"]), due_at, int(meta[b"total"]),
                                   [(jti, time, item) for jti, time, item in items])
