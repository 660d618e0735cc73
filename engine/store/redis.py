"""Redis backend: several idhooks processes (on one or many hosts) share one deployment's state.

Processes with the same Redis URL and `store.group` form one deployment; every key starts with
`<group>:` (`self.prefix`). Key map (p = prefix):

    p event:<jti>     hash   one stored event          p events          zset  all events by received_at
    p jti:<jti>       string de-duplication mark        p events:pending  zset  pending events by received_at
                             (value seen_at, expires    p events:stale    zset  stale events by received_at
                             after the window)          p events:lease    zset  leased events by lease end
                                                        p events:failed   zset  given-up events by received_at
    p last            hash   webhook -> newest received_at
    p job:<id>        hash   one delivery job          p jobkey:<key>    string job id (SET NX: one job per key)
    p jobs:scheduled  zset   queued jobs by due_at (new jobs, retries, re-queued dead letters)
    p jobs:stream:<destination>  stream  jobs due now, read through the consumer group named `store.group`
    p jobs:destinations  set  destinations that have a stream; p jobs:turn  counter (fair turns)
    p order:<order_key>  zset  pending jobs of one `ordered_by` key and destination, by their event's arrival;
                             only the first is scheduled (p order:seq: counter breaking ties)
    p captured:<ref>  hash   values `capture:` kept for one key  p captures:last  zset  ref by newest event
    p jobs:pending|failed|dead|done|all  zset by created_at (listing); p jobs:done_at zset (pruning)
    p subscriptions   hash   latest record per (webhook, topic, mode)
    p quarantine      zset   entry ids by arrival; p q:<id> hash; p quarantine:bytes, p quarantine:seq;
                             p quarantine:src:<source> zset ids by arrival; p quarantine:sources zset counts
    p schema          string schema version (2: the delivery queue on streams)

Every multi-step update is one Lua script (engine/store/redis_lua.py), so it is atomic across processes.
Times are the callers' (`now` arguments), so due times, event leases and retention behave as on SQLite and
the contract suite (tests/test_store_contract.py) controls them, with one exception below.

The delivery queue is one Redis stream per destination with one consumer group per deployment; every
worker is a consumer. A claim first moves due jobs from the due-time sorted set into their destination's
stream, then reads each destination's stream in turn (skipping the destinations the caller is backing off
from, which is why there is a stream per destination rather than one): XAUTOCLAIM takes over entries that
another consumer has held for longer than the lease (it died), XREADGROUP reads new ones. A claimed entry
stays in the group's pending list until ack, retry or dead letter acknowledges (XACK) and deletes it in the
same script that records the outcome; a retry goes back to the due-time set, a dead letter to `jobs:dead`.
The lease is the one time measured by Redis's own clock (XAUTOCLAIM's idle time): every host of a
deployment then agrees on when a lease has ended, whatever their clocks say.

While Redis cannot be written, `ingest` spools events to a local file (engine/store/spool.py) and
acknowledges them; they are drained into Redis, in order and de-duplicated, once it answers again.
"""

from __future__ import annotations

import json
import logging
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from engine.errors import StoreError
from engine.store import redis_lua
from engine.config.settings import StoreConfig
from engine.store.base import (ACCEPTED, STALE, IncomingEvent, Job, NewJob, QuarantineEntry,
                               QuarantineResult, Store, StoredEvent, StoreStats, SubscriptionRecord, strict_json,
                               after, event_order, appending)
from engine.secrets import redact_url
from engine.store.redis_connect import connect
from engine.store.redis_records import (event_fields, event_from_hash, job_fields, job_from_hash, num,
                                        quarantine_from_hash)
from engine.store.spool import Spool
from engine.store.state_redis import RedisStateMixin
from engine.store.detections_redis import RedisDetectionMixin
from engine.store.redis_transfer import RedisTransferMixin

try:
    import redis as redis_lib
except ImportError:  # pragma: no cover - exercised only without the optional dependency
    redis_lib = None

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
_BATCH = 500
_IDLE_CONSUMER_MS = 3_600_000  # a consumer with nothing pending, idle this long, belonged to a stopped worker
_JOB_LISTS = {None: "jobs:all", "pending": "jobs:pending", "failed": "jobs:failed", "dead": "jobs:dead",
              "done": "jobs:done"}


def _job_args(jobs: list[NewJob], now: float) -> list[Any]:
    """The job values of COMPLETE_EVENT / ENQUEUE_JOBS: id, key, destination, payload, order key, its event's
    arrival, capture ref per job. Ids sort by creation time."""
    args: list[Any] = []
    for job in jobs:
        job_id = f"{int(now * 1_000_000):016x}{uuid.uuid4().hex[:16]}"
        arrival = num(job.received_at if job.received_at is not None else now)
        args += [job_id, job.key, job.destination, strict_json(job.to_json(), f"job {job.key!r}"), job.order_key, arrival,
                 job.capture_ref]
    return args


class RedisStore(RedisStateMixin, RedisDetectionMixin, RedisTransferMixin, Store):
    """The shared store. `self.redis` is the client and `self.prefix` the deployment's key prefix."""

    def __init__(self, url: str, group: str = "idhooks", spool_dir: Path | str | None = None, *,
                 ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None) -> None:
        """`url` is one server or a Sentinel-managed primary (engine/store/redis_connect.py). `ca_file`,
        `cert_file` and `key_file` apply to TLS URLs (the server's certificate always verified); without
        `ca_file` the system's CA bundle is used."""
        self.url = redact_url(url)
        self.group = group
        self.prefix = f"{group}:"
        self.redis = connect(url, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        self._scripts = {name: self.redis.register_script(getattr(redis_lua, name)) for name in (
            "INGEST", "CLAIM_EVENTS", "COMPLETE_EVENT", "FAIL_EVENT", "ENQUEUE_JOBS", "CLAIM_JOBS", "MOVE_JOB",
            "DELETE_JOB", "PRUNE_EVENTS", "QUARANTINE_ADD", "QUARANTINE_REMOVE", "IMPORT_EVENT", "IMPORT_JOB",
            "UPGRADE_1_TO_2",
            "FORGET_CONSUMERS")}
        self._check_schema()
        folder = Path(spool_dir) if spool_dir is not None else Path("var/spool")
        self.spool = Spool(folder, self._ingest_redis, name=f"{group}-events")

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Redis failures become StoreError naming the (password-free) URL."""
        try:
            yield
        except redis_lib.RedisError as exc:
            raise StoreError(f"Redis store {self.url}: {what}: {exc}") from None

    def _run(self, script: str, *args: Any) -> Any:
        with self._guard(script.lower().replace("_", " ")):
            return self._scripts[script](args=[self.prefix, *args])

    # -- life cycle --------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        with self._guard("reading the schema version"):
            self.redis.set(self.prefix + "schema", SCHEMA_VERSION, nx=True)
            version = int(self.redis.get(self.prefix + "schema"))
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.url} (group {self.group!r}) has schema version {version}, newer than this "
                             f"idhooks ({SCHEMA_VERSION}): upgrade idhooks")
        if version == 1:  # one script, so two processes starting at once upgrade it once
            self._run("UPGRADE_1_TO_2")
            log.info("upgraded the Redis store %s (group %r) to schema 2: the delivery queue is on streams",
                     self.url, self.group)

    def schema_version(self) -> int:
        with self._guard("reading the schema version"):
            return int(self.redis.get(self.prefix + "schema") or 0)

    def close(self) -> None:
        self.spool.close()
        self.redis.close()

    def check_writable(self) -> None:
        """Ready while Redis takes writes, or while the spool can keep events for it."""
        try:
            with self._guard("probe write"):
                self.redis.set(self.prefix + "probe", "1", px=10_000)
        except StoreError:
            if not self.spool.writable():
                raise

    def degraded(self) -> str:
        if self.spool.active:
            return f"Redis unreachable or catching up: events are spooled to {self.spool.directory}"
        return ""

    # -- events ------------------------------------------------------------------------------------
    def ingest(self, event: IncomingEvent, dedup_window: float) -> str:
        """Into Redis; into the spool (ACCEPTED) while Redis fails or older spooled events still wait,
        so events reach Redis in the order they arrived. StoreError only when neither can be written."""
        if not self.spool.active:
            try:
                return self._ingest_redis(event, dedup_window)
            except StoreError as exc:
                log.warning("%s; spooling events to %s until Redis answers", exc, self.spool.directory)
        try:
            self.spool.append(event, dedup_window)
        except StoreError as exc:
            raise StoreError(f"could not store event {event.jti!r}: Redis is unreachable and {exc}") from None
        return ACCEPTED

    def _ingest_redis(self, event: IncomingEvent, dedup_window: float) -> str:
        now = event.received_at
        status = STALE if event.iat_ms / 1000.0 < now - dedup_window else "pending"
        result = self._run("INGEST", event.jti, num(now), num(now - dedup_window),
                           max(1, int(dedup_window * 1000)), status, event.webhook, num(event.iat_ms),
                           json.dumps(list(event.uris)), event.body).decode()
        return ACCEPTED if result == "pending" else result

    def _hashes(self, kind: str, ids: list[bytes]) -> list[tuple[str, dict[bytes, bytes]]]:
        """(id, hash) of `<prefix><kind>:<id>` for each id that still exists, in one round trip."""
        with self._guard(f"reading {kind} records"):
            pipe = self.redis.pipeline(transaction=False)
            for item in ids:
                pipe.hgetall(f"{self.prefix}{kind}:{item.decode()}")
            return [(item.decode(), h) for item, h in zip(ids, pipe.execute()) if h]

    def _events(self, jtis: list[bytes]) -> list[StoredEvent]:
        return [event_from_hash(jti, h) for jti, h in self._hashes("event", jtis)]

    def get_event(self, jti: str) -> StoredEvent | None:
        found = self._events([jti.encode()])
        return found[0] if found else None

    def list_events(self, since: float | None = None, limit: int = 100,
                    status: str | None = None) -> list[StoredEvent]:
        """pending, stale and failed events have their own index; processed ones are the rest, read in pages."""
        low = num(since) if since is not None else "-inf"
        index = f"events:{status}" if status in ("pending", "stale", "failed") else "events"
        found: list[StoredEvent] = []
        offset = 0
        while len(found) < limit:
            with self._guard("listing events"):
                jtis = self.redis.zrevrangebyscore(self.prefix + index, "+inf", low, start=offset,
                                                   num=limit if status != "processed" else max(limit, _BATCH))
            if not jtis:
                break
            offset += len(jtis)
            found += [e for e in self._events(jtis) if status in (None, e.status)]
        return found[:limit]

    def fail_event(self, jti: str, error: str, now: float, retry_at: float | None) -> None:
        self._run("FAIL_EVENT", jti, num(now), "" if retry_at is None else num(retry_at),
                  strict_json([{"error": error}], "a failure"))

    def events_before(self, before: tuple[float, str] | None, since: float | None, until: float | None,
                      limit: int) -> list[StoredEvent]:
        """The sorted set gives the range by time; events that share the cursor's received_at are read too
        (as many as there are) and ordered by jti here, as SQLite does."""
        low = num(since) if since is not None else "-inf"
        highest = min(x for x in (until, before[0] if before else None, float("inf")) if x is not None)
        high = num(highest) if highest != float("inf") else "+inf"
        with self._guard("listing events"):
            ties = self.redis.zcount(self.prefix + "events", high, high) if before is not None else 0
            jtis = self.redis.zrevrangebyscore(self.prefix + "events", high, low, start=0, num=limit + ties)
        events = [e for e in self._events(jtis) if after(event_order(e), before)]
        return sorted(events, key=event_order)[:limit]

    def claim_events(self, owner: str, lease: float, limit: int, now: float) -> list[StoredEvent]:
        return self._events(self._run("CLAIM_EVENTS", owner, num(now), num(now + lease), limit))

    def complete_event(self, jti: str, decisions: list[dict[str, Any]], jobs: list[NewJob], now: float) -> None:
        self.complete_events([(jti, decisions, jobs)], now)

    def complete_events(self, items: list[tuple[str, list[dict[str, Any]], list[NewJob]]], now: float) -> None:
        """One round trip for the batch; each event's decisions and jobs are still one atomic script."""
        with self._guard("complete event"):
            pipe = self.redis.pipeline(transaction=False)
            for jti, decisions, jobs in items:
                args: list[Any] = [self.prefix, jti, num(now), strict_json(decisions, "decisions")]
                self._scripts["COMPLETE_EVENT"](args=args + _job_args(jobs, now), client=pipe)
            pipe.execute()

    def append_decisions(self, items: Sequence[tuple[str, dict[str, Any]]], now: float) -> list[str]:
        """Read, change and write the events' decisions under WATCH (a Lua script's cjson would turn empty
        lists into objects): a concurrent change of one of the events makes the transaction retry."""
        jtis = sorted({jti for jti, _ in items})
        keys = [f"{self.prefix}event:{jti}" for jti in jtis]
        statuses: list[str] = []

        def change(pipe: Any) -> None:
            nonlocal statuses
            read = self.redis.pipeline(transaction=False)  # the WATCH on `pipe` covers these reads
            for key in keys:
                read.exists(key)
                read.hget(key, "decisions")
            found = read.execute()
            stored = {jti: json.loads(found[2 * i + 1]) if found[2 * i + 1] else None
                      for i, jti in enumerate(jtis) if found[2 * i]}
            changed, statuses = appending(stored, items, now)
            pipe.multi()
            for jti, decisions in changed.items():
                pipe.hset(f"{self.prefix}event:{jti}", "decisions", strict_json(decisions, "decisions"))

        if keys:
            with self._guard("recording later firings on their events"):
                self.redis.transaction(change, *keys)
        return statuses

    def enqueue_jobs(self, jobs: list[NewJob], now: float) -> None:
        """One atomic script: each key is created once (a SET NX on its key mark)."""
        self._run("ENQUEUE_JOBS", num(now), *_job_args(jobs, now))

    def prune(self, now: float, retention: float, dedup_window: float) -> int:
        """Events and done jobs past retention. De-duplication marks expire by themselves (and an old mark
        no longer counts: ingest compares its time with the window)."""
        removed = kept = 0
        while True:
            gone, stay = self._run("PRUNE_EVENTS", num(now - retention), kept, _BATCH)
            removed, kept = removed + gone, kept + stay
            if gone + stay < _BATCH:
                break
        with self._guard("pruning jobs"):
            done = self.redis.zrangebyscore(self.prefix + "jobs:done_at", "-inf", f"({num(now - retention)}")
        for job_id in done:
            self._run("DELETE_JOB", self.group, job_id, "done")
        self._prune_captures(now - retention)
        self._run("FORGET_CONSUMERS", self.group, _IDLE_CONSUMER_MS)
        return removed

    def last_accepted(self) -> dict[str, float]:
        with self._guard("reading last accepted"):
            return {k.decode(): float(v) for k, v in self.redis.hgetall(self.prefix + "last").items()}

    # -- delivery queue ----------------------------------------------------------------------------
    def _jobs(self, ids: list[bytes]) -> list[Job]:
        return [job_from_hash(h) for _, h in self._hashes("job", ids)]

    def claim_jobs(self, owner: str, lease: float, limit: int, now: float,
                   skip_destinations: frozenset[str] = frozenset()) -> list[Job]:
        """`now` decides which retries are due; the lease is measured by Redis's clock (XAUTOCLAIM's idle
        time), one clock for every host of the deployment, so hosts whose clocks differ never take over a
        job early."""
        return self._jobs(self._run("CLAIM_JOBS", self.group, owner, num(now), max(1, int(lease * 1000)), limit,
                                    *sorted(skip_destinations)))

    def _move(self, job_id: str, status: str, *, only_from: str = "", attempts: str = "+1", due_at: str = "",
              done_at: str = "", **fields: str) -> int:
        pairs = [item for pair in fields.items() for item in pair]
        return self._run("MOVE_JOB", self.group, job_id, status, only_from, attempts, due_at, done_at, *pairs)

    def ack_jobs(self, job_ids: list[str], now: float) -> None:
        """One round trip for the batch; each job's move is still one atomic script."""
        with self._guard("ack jobs"):
            pipe = self.redis.pipeline(transaction=False)
            for job_id in job_ids:
                self._scripts["MOVE_JOB"](args=[self.prefix, self.group, job_id, "done", "", "+1", "", num(now)],
                                          client=pipe)
            pipe.execute()

    def retry_job(self, job_id: str, due_at: float, error: str, response: str = "") -> None:
        self._move(job_id, "pending", due_at=num(due_at), last_error=error, last_response=response)

    def dead_job(self, job_id: str, error: str, response: str = "") -> None:
        self._move(job_id, "dead", last_error=error, last_response=response)

    def capture_set(self, ref: str, values: Mapping[str, Any], now: float) -> None:
        with self._guard("storing captured values"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self.prefix + "captured:" + ref, mapping={k: json.dumps(v) for k, v in values.items()})
            pipe.zadd(self.prefix + "captures:last", {ref: now}, nx=True)
            pipe.execute()

    def captures(self, ref: str) -> dict[str, Any]:
        with self._guard("reading captured values"):
            stored = self.redis.hgetall(self.prefix + "captured:" + ref)
        return {k.decode(): json.loads(v) for k, v in stored.items()}

    def _prune_captures(self, cutoff: float) -> None:
        """Captures of keys whose newest event is older than `cutoff` (see Store.captures)."""
        with self._guard("pruning captured values"):
            refs = self.redis.zrangebyscore(self.prefix + "captures:last", "-inf", f"({num(cutoff)}")
            for start in range(0, len(refs), _BATCH):
                chunk = refs[start:start + _BATCH]
                pipe = self.redis.pipeline(transaction=True)
                pipe.delete(*(self.prefix + "captured:" + r.decode() for r in chunk))
                pipe.zrem(self.prefix + "captures:last", *chunk)
                pipe.execute()

    def get_job(self, job_id: str) -> Job | None:
        found = self._jobs([job_id.encode()])
        return found[0] if found else None

    def list_jobs(self, status: str | None = None, limit: int = 100) -> list[Job]:
        if status not in _JOB_LISTS:
            raise ValueError(f"unknown job status {status!r}: use pending, failed, dead or done")
        with self._guard("listing jobs"):
            ids = self.redis.zrevrange(self.prefix + _JOB_LISTS[status], 0, limit - 1)
        return self._jobs(ids)

    def requeue_dead(self, job_id: str | None, now: float) -> int:
        if job_id is None:
            with self._guard("listing dead jobs"):
                ids = [i.decode() for i in self.redis.zrange(self.prefix + "jobs:dead", 0, -1)]
        else:
            ids = [job_id]
        return sum(self._move(i, "pending", only_from="dead", attempts="0", due_at=num(now), window_start=num(now))
                   for i in ids)

    def drop_dead(self, job_id: str) -> bool:
        return bool(self._run("DELETE_JOB", self.group, job_id, "dead"))

    # -- subscriptions -----------------------------------------------------------------------------
    def record_subscription(self, record: SubscriptionRecord) -> None:
        field = json.dumps([record.webhook, record.topic, record.mode])
        value = json.dumps([record.at, record.lease_expires_at, record.reason])
        with self._guard("recording a subscription"):
            self.redis.hset(self.prefix + "subscriptions", field, value)

    def list_subscriptions(self) -> list[SubscriptionRecord]:
        with self._guard("listing subscriptions"):
            raw = self.redis.hgetall(self.prefix + "subscriptions")
        records = []
        for field, value in raw.items():
            (webhook, topic, mode), (at, lease, reason) = json.loads(field), json.loads(value)
            records.append(SubscriptionRecord(webhook=webhook, topic=topic, mode=mode, at=at,
                                              lease_expires_at=lease, reason=reason))
        return sorted(records, key=lambda r: (r.webhook, r.topic, r.at))

    def remove_subscription(self, webhook: str, topic: str, mode: str) -> bool:
        with self._guard("removing a subscription record"):
            return bool(self.redis.hdel(self.prefix + "subscriptions", json.dumps([webhook, topic, mode])))

    # -- quarantine --------------------------------------------------------------------------------
    def quarantine_add(self, entry: QuarantineEntry, max_entries: int, max_bytes: int) -> QuarantineResult:
        size = len(entry.body)
        if size > max_bytes or max_entries < 1:
            return QuarantineResult(stored=False)
        evicted, evicted_bytes = self._run(
            "QUARANTINE_ADD", entry.id, entry.webhook, num(entry.received_at), entry.reason,
            json.dumps(entry.headers), entry.body, size, max_entries, max_bytes, entry.source)
        return QuarantineResult(evicted=evicted, evicted_bytes=evicted_bytes)

    def quarantine_list(self) -> list[QuarantineEntry]:
        with self._guard("listing the quarantine"):
            ids = self.redis.zrange(self.prefix + "quarantine", 0, -1)
        return [quarantine_from_hash(entry_id, h) for entry_id, h in self._hashes("q", ids)]

    def quarantine_remove(self, entry_id: str) -> bool:
        return bool(self._run("QUARANTINE_REMOVE", entry_id))

    # -- migration (idhooks migrate) ---------------------------------------------------------------
    def import_event(self, event: StoredEvent) -> bool:
        """Copy a stored event as it is (status, decisions); False when this deployment already has it."""
        return bool(self._run("IMPORT_EVENT", event.jti, *event_fields(event)))

    def import_job(self, job: Job, done_at: float | None = None) -> bool:
        """Copy a job with its status and attempts, unleased; False when its key already has a job here."""
        return bool(self._run("IMPORT_JOB", job.id, job.key, *job_fields(job, done_at)))

    # -- metrics -----------------------------------------------------------------------------------
    def stats(self) -> StoreStats:
        names = ("events", "events:pending", "events:stale", "events:failed", "jobs:pending", "jobs:failed", "jobs:dead",
                 "jobs:done", "quarantine")
        with self._guard("reading stats"):
            pipe = self.redis.pipeline(transaction=False)
            for name in names:
                pipe.zcard(self.prefix + name)
            pipe.get(self.prefix + "quarantine:bytes")
            *counts, qbytes = pipe.execute()
        events, pending, stale, efailed, jpending, failed, dead, done, qcount = counts
        stats = StoreStats(quarantine_entries=qcount, quarantine_bytes=int(qbytes or 0))
        by_event = {"pending": pending, "stale": stale, "failed": efailed,
                    "processed": events - pending - stale - efailed}
        by_job = {"pending": jpending - failed, "failed": failed, "dead": dead, "done": done}
        stats.events = {k: v for k, v in by_event.items() if v}
        stats.jobs = {k: v for k, v in by_job.items() if v}
        return stats


def open_backend(config: StoreConfig) -> RedisStore:
    """The store for a redis://, rediss://, unix:// or redis+sentinel:// URL (engine.store.open_store)."""
    return RedisStore(config.url, group=config.group, spool_dir=config.spool_dir, ca_file=config.ca_file,
                      cert_file=config.cert_file, key_file=config.key_file)
