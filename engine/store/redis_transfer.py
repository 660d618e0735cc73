"""`idhooks migrate` for RedisStore (engine/store/transfer.py): the exports and the detection-state imports, a
mixin using its `redis`, `prefix`, `_guard()` and `_hashes()` (the other imports are in redis.py and
state_redis.py). Key maps: redis.py, state_redis.py and detections_redis.py. An import writes a group's keys
in one MULTI/EXEC after checking that the group is not there yet (run migrate with every process stopped)."""

from __future__ import annotations

import json
from typing import Any, Iterator

from engine.store.base import Job, StoredEvent
from engine.store.redis_records import event_from_hash, job_from_hash, num
from engine.store.transfer import (PAGE, CaptureRecord, DigestPeriod, NewValueRecord, SequenceRecord, SuppressionRecord,
                                   TimerRecord, WindowRecord)


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

    def export_sequences(self, now: float) -> Iterator[SequenceRecord]:
        with self._guard("exporting sequences"):
            rules = sorted(rule.decode() for rule in self.redis.smembers(self.prefix + "st:qrules"))
        for rule in rules:
            for group, expires_at in self._scored(f"st:qx:{rule}", f"({num(now)}"):
                with self._guard("exporting a sequence"):
                    state = self.redis.get(f"{self.prefix}st:q:{rule}:{group.decode()}")
                if state is not None:
                    yield SequenceRecord(rule, group.decode(), state.decode(), expires_at)

    def export_new_values(self, now: float) -> Iterator[NewValueRecord]:
        with self._guard("exporting new_value groups"):
            rules = sorted(rule.decode() for rule in self.redis.smembers(self.prefix + "st:nrules"))
        for rule in rules:
            for group, expires_at in self._scored(f"st:nx:{rule}", f"({num(now)}"):
                key = group.decode()
                with self._guard("exporting a new_value group"):
                    meta = self.redis.hgetall(f"{self.prefix}st:ng:{rule}:{key}")
                    values = self.redis.zrange(f"{self.prefix}st:nv:{rule}:{key}", 0, -1, withscores=True)
                if meta:
                    since = float(meta[b"since"])
                    yield NewValueRecord(rule, key, since, float(meta.get(b"last") or since),
                                         meta.get(b"jti", b"").decode(), expires_at,
                                         [(value.decode(), until) for value, until in values])

    def export_timers(self) -> Iterator[TimerRecord]:
        for member, _ in self._scored("st:tq", "-inf"):
            rule, group = member.decode().split("\n", 1)
            with self._guard("exporting a timer"):
                fields = self.redis.hgetall(f"{self.prefix}st:t:{rule}:{group}")
            if fields:
                yield TimerRecord(rule, group, float(fields[b"due"]), float(fields[b"started"]),
                                  json.loads(fields[b"payload"]))

    def export_captures(self) -> Iterator[CaptureRecord]:
        for ref, last_event_at in self._scored("captures:last", "-inf"):
            with self._guard("exporting captured values"):
                stored = self.redis.hgetall(self.prefix + "captured:" + ref.decode())
            if stored:
                yield CaptureRecord(ref.decode(), {k.decode(): json.loads(v) for k, v in stored.items()}, last_event_at)

    def import_capture(self, record: CaptureRecord) -> bool:
        with self._guard("copying captured values"):
            if self.redis.exists(self.prefix + "captured:" + record.ref):
                return False
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self.prefix + "captured:" + record.ref,
                      mapping={k: json.dumps(v) for k, v in record.values.items()})
            pipe.zadd(self.prefix + "captures:last", {record.ref: record.last_event_at}, gt=True)  # or adds it
            pipe.execute()
        return True

    def import_sequence(self, record: SequenceRecord) -> bool:
        p = self.prefix
        with self._guard("copying a sequence"):
            if not self.redis.set(f"{p}st:q:{record.rule_id}:{record.group_key}", record.state, nx=True):
                return False
            pipe = self.redis.pipeline()
            pipe.zadd(f"{p}st:qx:{record.rule_id}", {record.group_key: record.expires_at})
            pipe.sadd(f"{p}st:qrules", record.rule_id)
            pipe.execute()
        return True

    def import_new_value(self, record: NewValueRecord) -> bool:
        p, rule, group = self.prefix, record.rule_id, record.group_key
        with self._guard("copying a new_value group"):
            if self.redis.exists(f"{p}st:ng:{rule}:{group}"):
                return False
            pipe = self.redis.pipeline()
            pipe.hset(f"{p}st:ng:{rule}:{group}", mapping={"since": num(record.since), "last": num(record.last),
                                                           "jti": record.new_jti})
            if record.values:
                pipe.zadd(f"{p}st:nv:{rule}:{group}", dict(record.values))
            pipe.zadd(f"{p}st:nx:{rule}", {group: record.expires_at})
            pipe.sadd(f"{p}st:nrules", rule)
            pipe.execute()
        return True

    def import_timer(self, record: TimerRecord) -> bool:
        p, rule, group = self.prefix, record.rule_id, record.group_key
        with self._guard("copying a timer"):
            if self.redis.exists(f"{p}st:t:{rule}:{group}"):
                return False
            pipe = self.redis.pipeline()
            pipe.hset(f"{p}st:t:{rule}:{group}", mapping={"due": num(record.due_at), "started": num(record.started),
                                                          "payload": json.dumps(record.payload)})
            pipe.zadd(f"{p}st:tq", {f"{rule}\n{group}": record.due_at})
            pipe.hincrby(f"{p}st:tn", rule, 1)
            pipe.execute()
        return True
