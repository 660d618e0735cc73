"""PostgreSQL backend: the durable shared store. Several idhooks processes on one or many hosts share events,
de-duplication, rule state and the delivery queue, with PostgreSQL's durability (WAL, fsync at commit),
backups, replicas and managed failover.

A deployment (`store.group`, default `idhooks`) is a PostgreSQL schema of that name in the URL's database;
its tables are in engine/store/postgres_schema.py, upgraded at start. Every write is one transaction that
returns only once committed, so a 2xx means the event is on the server's disk.

- De-duplication is the events table's primary key: `INSERT .. ON CONFLICT (jti) DO NOTHING` stores one of
  two racing copies, whichever process receives them.
- Claims (events and jobs) are `UPDATE .. WHERE id IN (SELECT .. FOR UPDATE SKIP LOCKED)`: concurrent
  workers take disjoint rows without waiting on each other.
- Job leases are measured by the database's clock (`clock_timestamp()`), one clock for every host, so hosts
  whose clocks differ never take a job over early; due times, event leases and retention use the callers'
  `now` as on the other backends (tests control them).
- New jobs are announced with NOTIFY on commit; `on_new_jobs()` listeners (the delivery worker) wake at once
  in every other process instead of polling hard (the creating process wakes its own worker directly).
- Only the intake's commit waits for PostgreSQL to flush its WAL to disk (synchronous_commit on): it is
  the promise behind a 2xx. Everything else (claims and leases, decisions and jobs, acks and retries, rule
  state) commits on a second pool with synchronous_commit off, as SQLite commits it with synchronous=NORMAL:
  it survives an idhooks crash, and a PostgreSQL crash can lose only the last moments of it (at most about
  3 x wal_writer_delay, 600 ms by default), which is redone, never lost: an event evaluated again into the
  same job keys, a job sent again with the same Idempotency-Key. Commits are in WAL order, so what survives
  is always a prefix. Measured on this machine: 4-6 ms per synchronous commit against 0.3-0.6 ms.
- Retention deletes in bounded batches (PRUNE_BATCH rows per transaction), so pruning never holds long locks
  and autovacuum reuses the space instead of the table growing.

While PostgreSQL cannot be reached, `ingest` spools events to a local file (engine/store/spool.py) and
acknowledges them; they are drained into PostgreSQL, in order and de-duplicated, once it answers again, and
`degraded()` says so (shown by /readyz).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from engine.errors import StoreError
from engine.secrets import Secret, redact_url
from engine.config.settings import StoreConfig
from engine.store.base import (ACCEPTED, DUPLICATE, STALE, IncomingEvent, Job, NewJob, QuarantineEntry,
                               QuarantineResult, Store, StoredEvent, StoreStats, SubscriptionRecord, strict_json,
                               appending)
from engine.store.detections_postgres import PostgresDetectionMixin
from engine.store.postgres_connect import check_schema_name, clean_error, listen_connection, open_pool
from engine.store.postgres_schema import MIGRATIONS
from engine.store.spool import Spool
from engine.store.postgres_transfer import PostgresTransferMixin
from engine.store.state_postgres import PostgresStateMixin

try:
    import psycopg
    from psycopg import sql
    from psycopg.rows import dict_row
except ImportError:  # pragma: no cover - open_pool reports the missing package
    psycopg = None

log = logging.getLogger(__name__)

PRUNE_BATCH = 5000
"""Rows deleted per retention transaction."""
EXACT_COUNT_LIMIT = 1_000_000
"""Above this many rows (the planner's estimate), stats() estimates the processed events and done jobs
instead of counting them: an exact count would read the whole table at every metrics scrape."""
CHANNEL = "idhooks_jobs"
"""NOTIFY channel; the payload is the deployment's schema."""
_DB_NOW = "extract(epoch FROM clock_timestamp())"
_JOB_FILTERS = {None: "TRUE", "pending": "status = 'pending'", "failed": "status = 'pending' AND attempts > 0",
                "dead": "status = 'dead'", "done": "status = 'done'"}


def _event(row: dict[str, Any]) -> StoredEvent:
    return StoredEvent(jti=row["jti"], webhook=row["webhook"], iat_ms=row["iat_ms"], received_at=row["received_at"],
                       uris=tuple(json.loads(row["uris"])), body=bytes(row["body"]), status=row["status"],
                       decisions=json.loads(row["decisions"]) if row["decisions"] else None,
                       processed_at=row["processed_at"], attempts=row["attempts"])


def _job(row: dict[str, Any]) -> Job:
    status = row["status"]
    if status == "pending" and row["attempts"] > 0:
        status = "failed"
    return Job(id=row["id"], key=row["key"], destination=row["destination"],
               **NewJob.fields_from_json(json.loads(row["payload"])), status=status, attempts=row["attempts"],
               created_at=row["created_at"], due_at=row["due_at"],
               last_error=row["last_error"], last_response=row["last_response"], lease_owner=row["lease_owner"],
               window_start=row["window_start"])


def _is_open(conn: "psycopg.Connection | None") -> bool:
    return conn is not None and not conn.closed


class PostgresStore(PostgresStateMixin, PostgresDetectionMixin, PostgresTransferMixin, Store):
    """The PostgreSQL store of deployment `group` at `url` (postgresql:// or postgres://)."""

    def __init__(self, url: str, group: str = "idhooks", spool_dir: Path | str | None = None, *,
                 password: Secret | None = None, ca_file: Path | None = None, cert_file: Path | None = None,
                 key_file: Path | None = None, max_connections: int = 16) -> None:
        """`password` (store.password_file) overrides one in the URL. `ca_file`, `cert_file` and `key_file`
        turn on TLS (engine/store/postgres_connect.py)."""
        self.url = redact_url(url)
        self.group = self.schema = check_schema_name(group)
        self._raw_url, self._password = url, password
        self._tls = {"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file}
        self._own: dict[int, weakref.ref["psycopg.Connection"]] = {}  # backend pid -> this store's connection
        self._pool = open_pool(url, self.schema, password=password, max_size=max_connections,
                               on_connect=self._remember, **self._tls)
        try:
            self._work = open_pool(url, self.schema, password=password, max_size=max_connections, durable=False,
                                   on_connect=self._remember, **self._tls)
        except BaseException:
            self._pool.close()
            raise
        self._listeners: list[Callable[[], None]] = []
        self._listen_thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while the LISTEN connection is up (tests wait for it)
        self._closed = threading.Event()
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            self._work.close()
            raise
        folder = Path(spool_dir) if spool_dir is not None else Path("var/spool")
        self.spool = Spool(folder, self._ingest_db, name=f"{self.schema}-events")

    # -- connections -------------------------------------------------------------------------------
    def _error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"PostgreSQL store {self.url} (group {self.group!r}): {what}: "
                          f"{clean_error(exc, self._password)}")

    def _remember(self, conn: "psycopg.Connection") -> None:
        """Note a new pooled connection's backend pid, forgetting the closed ones (at most the pools' size)."""
        live = {pid: ref for pid, ref in self._own.items() if _is_open(ref())}
        live[conn.info.backend_pid] = weakref.ref(conn)
        self._own = live  # replaced whole: the LISTEN thread reads it without a lock

    def _sent_here(self, pid: int) -> bool:
        """Whether the backend `pid` that sent a NOTIFY serves one of this store's open connections (a closed
        one's pid may since serve another process: that is not ours)."""
        ref = self._own.get(pid)
        return ref is not None and _is_open(ref())

    @contextmanager
    def _conn(self, what: str, durable: bool = False) -> Iterator["psycopg.Connection"]:
        """A pooled connection (autocommit); driver and pool failures become StoreError. `durable` commits wait
        for the WAL flush; the others do not (see the module docstring)."""
        if self._closed.is_set():
            raise StoreError(f"the PostgreSQL store {self.url} is closed")
        try:
            with (self._pool if durable else self._work).connection() as conn:
                yield conn
        except StoreError:
            raise
        except (psycopg.Error, OSError) as exc:
            raise self._error(what, exc) from None
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg_pool"):
                raise self._error(what, exc) from None
            raise

    @contextmanager
    def _tx(self, what: str, durable: bool = False, pipeline: bool = False) -> Iterator["psycopg.Cursor"]:
        """One transaction: committed when the block ends, rolled back if it raises. With `pipeline` (for a
        block that reads no result), one round trip: the statements go out together, ended by a single Sync,
        and PostgreSQL runs everything between two Syncs as one implicit transaction, all of it or none (no
        BEGIN and COMMIT, each of which would wait for its answer)."""
        with self._conn(what, durable) as conn, (conn.pipeline() if pipeline else conn.transaction()), \
                conn.cursor(row_factory=dict_row) as cur:
            yield cur

    def _rows(self, what: str, query: Any, args: Any = (), durable: bool = False) -> list[dict[str, Any]]:
        """One statement in its own transaction; its rows (none for a statement without RETURNING)."""
        with self._conn(what, durable) as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else []

    def _count(self, what: str, query: Any, args: Any = (), durable: bool = False) -> int:
        with self._conn(what, durable) as conn:
            return conn.execute(query, args).rowcount

    # -- life cycle --------------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Create the deployment's schema and bring it to the newest version (one transaction, under an
        advisory lock so two processes starting at once upgrade it once)."""
        with self._tx("upgrading the schema", durable=True) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"idhooks-schema:{self.schema}",))
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            cur.execute("CREATE TABLE IF NOT EXISTS idhooks_meta (version integer NOT NULL)")
            cur.execute("SELECT version FROM idhooks_meta")
            row = cur.fetchone()
            version = row["version"] if row else 0
            if row is None:
                cur.execute("INSERT INTO idhooks_meta VALUES (0)")
            if version > len(MIGRATIONS):
                raise StoreError(f"{self.url} (group {self.group!r}) has schema version {version}, newer than "
                                 f"this idhooks ({len(MIGRATIONS)}): upgrade idhooks")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    cur.execute(statement)
                cur.execute("UPDATE idhooks_meta SET version = %s", (number,))
        if version < len(MIGRATIONS):
            log.info("PostgreSQL store %s (group %r): schema %d -> %d", self.url, self.group, version,
                     len(MIGRATIONS))

    def schema_version(self) -> int:
        return self._rows("reading the schema version", "SELECT version FROM idhooks_meta")[0]["version"]

    def close(self) -> None:
        self._closed.set()
        self.spool.close()
        if self._listen_thread is not None:
            self._listen_thread.join(timeout=5)
        self._pool.close()
        self._work.close()

    def check_writable(self) -> None:
        """Ready while PostgreSQL commits a real write (its schema version rewritten with the same value: fails
        on a read-only replica or a full disk), or while the spool can keep events for it."""
        try:
            self._count("probe write", "UPDATE idhooks_meta SET version = version", durable=True)
        except StoreError:
            if not self.spool.writable():
                raise

    def degraded(self) -> str:
        if self.spool.active:
            return f"PostgreSQL unreachable or catching up: events are spooled to {self.spool.directory}"
        return ""

    # -- events ------------------------------------------------------------------------------------
    def ingest(self, event: IncomingEvent, dedup_window: float) -> str:
        """Into PostgreSQL; into the spool (ACCEPTED) while it fails or older spooled events still wait, so
        events reach it in the order they arrived. StoreError only when neither can be written."""
        if not self.spool.active:
            try:
                return self._ingest_db(event, dedup_window)
            except StoreError as exc:
                log.warning("%s; spooling events to %s until PostgreSQL answers", exc, self.spool.directory)
        try:
            self.spool.append(event, dedup_window)
        except StoreError as exc:
            raise StoreError(f"could not store event {event.jti!r}: PostgreSQL is unreachable and {exc}") from None
        return ACCEPTED

    def _ingest_db(self, event: IncomingEvent, dedup_window: float) -> str:
        """One INSERT, committed before it returns. A jti still stored is a duplicate (retention >= the
        de-duplication window); the primary key decides between racing copies."""
        stale = event.iat_ms / 1000.0 < event.received_at - dedup_window
        inserted = self._count(
            "storing an event",
            "INSERT INTO events (jti, webhook, iat_ms, received_at, uris, body, status) VALUES (%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (jti) DO NOTHING",
            (event.jti, event.webhook, event.iat_ms, event.received_at, json.dumps(list(event.uris)), event.body,
             STALE if stale else "pending"), durable=True)
        if not inserted:
            return DUPLICATE
        return STALE if stale else ACCEPTED

    def get_event(self, jti: str) -> StoredEvent | None:
        rows = self._rows("reading an event", "SELECT * FROM events WHERE jti = %s", (jti,))
        return _event(rows[0]) if rows else None

    def list_events(self, since: float | None = None, limit: int = 100,
                    status: str | None = None) -> list[StoredEvent]:
        where, args = ("", ()) if status is None else (" AND status = %s", (status,))
        rows = self._rows("listing events", f"SELECT * FROM events WHERE received_at >= %s{where} "
                                            "ORDER BY received_at DESC, jti LIMIT %s",
                          (since if since is not None else float("-inf"), *args, limit))
        return [_event(r) for r in rows]

    def events_before(self, before: tuple[float, str] | None, since: float | None, until: float | None,
                      limit: int) -> list[StoredEvent]:
        where = ["received_at >= %s", "received_at <= %s"]
        args: list[Any] = [since if since is not None else float("-inf"), until if until is not None else float("inf")]
        if before is not None:
            where.append("(received_at < %s OR (received_at = %s AND jti > %s))")
            args += [before[0], before[0], before[1]]
        rows = self._rows("listing events", f"SELECT * FROM events WHERE {' AND '.join(where)} "
                                            "ORDER BY received_at DESC, jti LIMIT %s", (*args, limit))
        return [_event(r) for r in rows]

    def claim_events(self, owner: str, lease: float, limit: int, now: float) -> list[StoredEvent]:
        rows = self._rows(
            "claiming events",
            "UPDATE events SET lease_owner = %s, lease_until = %s WHERE jti IN (SELECT jti FROM events "
            "WHERE status = 'pending' AND lease_until <= %s ORDER BY received_at, jti LIMIT %s "
            "FOR UPDATE SKIP LOCKED) RETURNING *", (owner, now + lease, now, limit))
        return sorted((_event(r) for r in rows), key=lambda e: (e.received_at, e.jti))

    def complete_event(self, jti: str, decisions: list[dict[str, Any]], jobs: list[NewJob], now: float) -> None:
        self.complete_events([(jti, decisions, jobs)], now)

    def complete_events(self, items: list[tuple[str, list[dict[str, Any]], list[NewJob]]], now: float) -> None:
        """One transaction for the batch: the jobs (existing keys skipped), every event's decisions, and a
        NOTIFY that PostgreSQL delivers only if the transaction commits. Pipelined: one round trip instead of six
        (the pool's check, BEGIN, INSERT, NOTIFY, UPDATE, COMMIT) between the processor and the delivery worker."""
        new_jobs = [j for _, _, event_jobs in items for j in event_jobs]
        events = [(jti, strict_json(decisions, "decisions")) for jti, decisions, _ in items if jti]
        with self._tx("completing events", pipeline=True) as cur:
            self._insert_jobs(cur, new_jobs, now)
            if events:
                cur.execute(
                    "UPDATE events SET status = 'processed', decisions = d.decisions, processed_at = %s, "
                    "lease_owner = '', lease_until = 0 FROM unnest(%s::text[], %s::text[]) AS d(jti, decisions) "
                    "WHERE events.jti = d.jti", (now, *map(list, zip(*events))))

    def fail_event(self, jti: str, error: str, now: float, retry_at: float | None) -> None:
        if retry_at is not None:  # the lease end doubles as "not before": claims skip it until then
            self._count("postponing an event", "UPDATE events SET attempts = attempts + 1, lease_owner = '', "
                                               "lease_until = %s WHERE jti = %s AND status = 'pending'",
                        (retry_at, jti))
            return
        self._count("giving up an event", "UPDATE events SET attempts = attempts + 1, status = 'failed', "
                                          "decisions = %s, processed_at = %s, lease_owner = '', lease_until = 0 "
                                          "WHERE jti = %s AND status = 'pending'",
                    (strict_json([{"error": error}], "a failure"), now, jti))

    def append_decisions(self, items: Sequence[tuple[str, dict[str, Any]]], now: float) -> list[str]:
        with self._tx("recording later firings on their events") as cur:
            cur.execute("SELECT jti, decisions FROM events WHERE jti = ANY(%s) ORDER BY jti FOR UPDATE",
                        (sorted({jti for jti, _ in items}),))
            stored = {r["jti"]: json.loads(r["decisions"]) if r["decisions"] else None for r in cur.fetchall()}
            changed, statuses = appending(stored, items, now)
            if changed:
                cur.execute("UPDATE events SET decisions = d.decisions FROM unnest(%s::text[], %s::text[]) "
                            "AS d(jti, decisions) WHERE events.jti = d.jti",
                            (list(changed), [strict_json(d, "decisions") for d in changed.values()]))
        return statuses

    def enqueue_jobs(self, jobs: list[NewJob], now: float) -> None:
        with self._tx("queueing jobs") as cur:
            self._insert_jobs(cur, jobs, now)

    def _insert_jobs(self, cur: "psycopg.Cursor", jobs: list[NewJob], now: float) -> None:
        """Pending jobs, due now (a key already queued is skipped), in one statement that also sends the NOTIFY
        when it added any (it goes out with the commit); an ordered job is placed by its event's arrival
        (order_at). Nothing here reads a result, so a pipelined transaction never waits in the middle."""
        if not jobs:
            return
        rows = [(uuid.uuid4().hex, j.key, j.destination, strict_json(j.to_json(), f"job {j.key!r}"), j.order_key,
                 j.received_at if j.received_at is not None else now) for j in jobs]
        cur.execute(
            "WITH added AS (INSERT INTO jobs (id, key, destination, payload, status, created_at, due_at, order_key, "
            "order_at) SELECT id, key, destination, payload, 'pending', %s, %s, order_key, order_at FROM "
            "unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[]) WITH ORDINALITY "
            "AS j(id, key, destination, payload, order_key, order_at, n) ORDER BY n ON CONFLICT (key) DO NOTHING "
            "RETURNING 1) SELECT pg_notify(%s, %s) WHERE EXISTS (SELECT FROM added)",
            (now, now, *map(list, zip(*rows)), CHANNEL, self.schema))
        touched: dict[str, float] = {}
        for job in jobs:
            if job.ordered_by:
                at = job.received_at if job.received_at is not None else now
                touched[job.capture_ref] = max(at, touched.get(job.capture_ref, at))
        if touched:
            cur.execute("INSERT INTO captures (ref, last_event_at) SELECT * FROM unnest(%s::text[], %s::float8[]) "
                        "ON CONFLICT (ref) DO UPDATE SET last_event_at = "
                        "GREATEST(captures.last_event_at, EXCLUDED.last_event_at)",
                        (list(touched), list(touched.values())))

    def capture_set(self, ref: str, values: Mapping[str, Any], now: float) -> None:
        with self._tx("storing captured values") as cur:
            cur.execute("INSERT INTO captures (ref, last_event_at) VALUES (%s, %s) ON CONFLICT DO NOTHING", (ref, now))
            cur.execute("SELECT captured FROM captures WHERE ref = %s FOR UPDATE", (ref,))
            merged = {**json.loads(cur.fetchone()["captured"]), **values}
            cur.execute("UPDATE captures SET captured = %s WHERE ref = %s", (json.dumps(merged), ref))

    def captures(self, ref: str) -> dict[str, Any]:
        rows = self._rows("reading captured values", "SELECT captured FROM captures WHERE ref = %s", (ref,))
        return json.loads(rows[0]["captured"]) if rows else {}

    def prune(self, now: float, retention: float, dedup_window: float) -> int:
        """Events (not pending) and done jobs older than retention, PRUNE_BATCH rows per transaction."""
        cutoff = now - retention
        removed = self._prune_batches(
            "SELECT jti FROM events WHERE received_at < %s AND status <> 'pending' ORDER BY received_at LIMIT %s",
            "events", "jti", cutoff)
        self._prune_batches("SELECT id FROM jobs WHERE status = 'done' AND done_at < %s ORDER BY done_at LIMIT %s",
                            "jobs", "id", cutoff)
        self._prune_batches("SELECT ref FROM captures WHERE last_event_at < %s ORDER BY last_event_at LIMIT %s",
                            "captures", "ref", cutoff)
        return removed

    def _prune_batches(self, select: str, table: str, key: str, cutoff: float) -> int:
        removed = 0
        while True:
            count = self._count(f"pruning {table}", f"DELETE FROM {table} WHERE {key} IN ({select})",
                                (cutoff, PRUNE_BATCH))
            removed += count
            if count < PRUNE_BATCH:
                return removed

    def last_accepted(self) -> dict[str, float]:
        """A skip scan over the (webhook, received_at) index: one lookup per webhook, whatever the table's size."""
        rows = self._rows("reading last accepted", """
            WITH RECURSIVE hooks(webhook) AS (
                SELECT min(webhook) FROM events
                UNION ALL
                SELECT (SELECT min(webhook) FROM events WHERE webhook > hooks.webhook) FROM hooks
                WHERE hooks.webhook IS NOT NULL)
            SELECT webhook, (SELECT max(received_at) FROM events e WHERE e.webhook = hooks.webhook) AS at
            FROM hooks WHERE webhook IS NOT NULL""")
        return {r["webhook"]: r["at"] for r in rows}

    # -- delivery queue ----------------------------------------------------------------------------
    def claim_jobs(self, owner: str, lease: float, limit: int, now: float,
                   skip_destinations: frozenset[str] = frozenset()) -> list[Job]:
        """Due pending jobs whose lease (by the database's clock) has ended, oldest due first, skipping rows
        another worker is claiming right now. An ordered job waits while an earlier job of its order key is
        still pending (queued, leased, or failed and waiting for its retry)."""
        rows = self._rows(
            "claiming jobs",
            f"UPDATE jobs SET lease_owner = %s, lease_until = {_DB_NOW} + %s WHERE id IN ("
            f"SELECT id FROM jobs AS j WHERE status = 'pending' AND due_at <= %s AND lease_until <= {_DB_NOW} "
            "AND NOT (destination = ANY(%s)) AND (j.order_key = '' OR NOT EXISTS (SELECT 1 FROM jobs AS e "
            "WHERE e.order_key = j.order_key AND e.status = 'pending' AND (e.order_at, e.seq) < (j.order_at, j.seq))) "
            "ORDER BY due_at, created_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING *",
            (owner, lease, now, sorted(skip_destinations), limit))
        return sorted((_job(r) for r in rows), key=lambda job: (job.due_at, job.created_at))

    def ack_jobs(self, job_ids: list[str], now: float) -> None:
        if job_ids:
            self._count("acknowledging jobs", "UPDATE jobs SET status = 'done', attempts = attempts + 1, done_at = %s, "
                                              "lease_owner = '', lease_until = 0 WHERE id = ANY(%s)", (now, job_ids))

    def retry_job(self, job_id: str, due_at: float, error: str, response: str = "") -> None:
        self._count("scheduling a retry", "UPDATE jobs SET attempts = attempts + 1, due_at = %s, last_error = %s, "
                                          "last_response = %s, lease_owner = '', lease_until = 0 WHERE id = %s",
                    (due_at, error, response, job_id))

    def dead_job(self, job_id: str, error: str, response: str = "") -> None:
        self._count("recording a dead letter", "UPDATE jobs SET status = 'dead', attempts = attempts + 1, "
                                               "last_error = %s, last_response = %s, lease_owner = '', "
                                               "lease_until = 0 WHERE id = %s", (error, response, job_id))

    def get_job(self, job_id: str) -> Job | None:
        rows = self._rows("reading a job", "SELECT * FROM jobs WHERE id = %s", (job_id,))
        return _job(rows[0]) if rows else None

    def list_jobs(self, status: str | None = None, limit: int = 100) -> list[Job]:
        if status not in _JOB_FILTERS:
            raise ValueError(f"unknown job status {status!r}: use pending, failed, dead or done")
        rows = self._rows("listing jobs", f"SELECT * FROM jobs WHERE {_JOB_FILTERS[status]} "
                                          "ORDER BY created_at DESC, id LIMIT %s", (limit,))
        return [_job(r) for r in rows]

    def jobs_before(self, status: str | None, destination: str | None, before: tuple[float, str] | None,
                    limit: int) -> list[Job]:
        where, args = [_JOB_FILTERS[status]], []
        if destination is not None:
            where.append("destination = %s")
            args.append(destination)
        if before is not None:
            where.append("(created_at < %s OR (created_at = %s AND id > %s))")
            args += [before[0], before[0], before[1]]
        rows = self._rows("listing jobs", f"SELECT * FROM jobs WHERE {' AND '.join(where)} "
                                          "ORDER BY created_at DESC, id LIMIT %s", (*args, limit))
        return [_job(r) for r in rows]

    def jobs_for_event(self, jti: str) -> list[Job]:
        """Keys are jti:rule:index: a byte-order range on the key's "C" index, whatever the collation."""
        rows = self._rows("reading an event's jobs", 'SELECT * FROM jobs WHERE key COLLATE "C" >= %s AND '
                                                     'key COLLATE "C" < %s ORDER BY key COLLATE "C"',
                          (jti + ":", jti + ";"))
        return [job for job in map(_job, rows) if job.jti == jti]

    def requeue_dead(self, job_id: str | None, now: float) -> int:
        where, args = ("status = 'dead' AND id = %s", (job_id,)) if job_id else ("status = 'dead'", ())
        with self._tx("re-queueing dead letters", durable=True) as cur:
            cur.execute(f"UPDATE jobs SET status = 'pending', due_at = %s, window_start = %s, attempts = 0, "
                        f"lease_owner = '', lease_until = 0 WHERE {where}", (now, now, *args))
            count = cur.rowcount
            if count:
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.schema))
        if count:  # the API and console re-queue inside the server: its own worker skips its own NOTIFY
            for callback in list(self._listeners):
                callback()
        return count

    def drop_dead(self, job_id: str) -> bool:
        return self._count("dropping a dead letter", "DELETE FROM jobs WHERE status = 'dead' AND id = %s",
                           (job_id,), durable=True) > 0

    def on_new_jobs(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever another process of this deployment creates or re-queues jobs (LISTEN). This
        store's own NOTIFYs (recognised by the sending backend's pid) are skipped: the process that created the
        jobs wakes its own worker directly, and a second wake-up of every idle worker only made each of them
        claim again and find nothing."""
        self._listeners.append(callback)
        if self._listen_thread is None:
            self._listen_thread = threading.Thread(target=self._listen, name="postgres-listen", daemon=True)
            self._listen_thread.start()

    def _listen(self) -> None:
        """LISTEN on a connection of its own; reconnects after a failure (a missed wake-up only costs the
        worker's next poll)."""
        while not self._closed.is_set():
            try:
                with listen_connection(self._raw_url, password=self._password, **self._tls) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    self.listening.set()
                    while not self._closed.is_set():
                        for notice in conn.notifies(timeout=0.5):
                            if notice.payload == self.schema and not self._sent_here(notice.pid):
                                for callback in list(self._listeners):
                                    callback()
            except psycopg.Error as exc:
                self.listening.clear()
                log.debug("PostgreSQL LISTEN connection lost (%s); reconnecting", clean_error(exc, self._password))
                self._closed.wait(1.0)

    # -- subscriptions -----------------------------------------------------------------------------
    def record_subscription(self, record: SubscriptionRecord) -> None:
        self._count("recording a subscription",
                    "INSERT INTO subscriptions VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (webhook, topic, mode) "
                    "DO UPDATE SET at = EXCLUDED.at, lease_expires_at = EXCLUDED.lease_expires_at, "
                    "reason = EXCLUDED.reason",
                    (record.webhook, record.topic, record.mode, record.at, record.lease_expires_at, record.reason),
                    durable=True)

    def list_subscriptions(self) -> list[SubscriptionRecord]:
        rows = self._rows("listing subscriptions", "SELECT * FROM subscriptions ORDER BY webhook, topic, at")
        return [SubscriptionRecord(webhook=r["webhook"], topic=r["topic"], mode=r["mode"], at=r["at"],
                                   lease_expires_at=r["lease_expires_at"], reason=r["reason"]) for r in rows]

    def remove_subscription(self, webhook: str, topic: str, mode: str) -> bool:
        return self._count("removing a subscription record", "DELETE FROM subscriptions WHERE webhook = %s AND "
                                                             "topic = %s AND mode = %s", (webhook, topic, mode)) > 0

    # -- quarantine --------------------------------------------------------------------------------
    def quarantine_add(self, entry: QuarantineEntry, max_entries: int, max_bytes: int) -> QuarantineResult:
        size = len(entry.body)
        if size > max_bytes or max_entries < 1:
            return QuarantineResult(stored=False)
        result = QuarantineResult()
        with self._tx("quarantining a delivery", durable=True) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"idhooks-quarantine:{self.schema}",))
            cur.execute("INSERT INTO quarantine (id, webhook, received_at, reason, headers, body, size, source) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", (entry.id, entry.webhook, entry.received_at,
                                                                    entry.reason, json.dumps(entry.headers),
                                                                    entry.body, size, entry.source))
            while True:
                cur.execute("SELECT count(*) AS n, COALESCE(sum(size), 0) AS total FROM quarantine")
                row = cur.fetchone()
                if row["n"] <= max_entries and row["total"] <= max_bytes:
                    break
                cur.execute("DELETE FROM quarantine WHERE seq = (SELECT min(seq) FROM quarantine WHERE source = "
                            "(SELECT source FROM quarantine GROUP BY source ORDER BY count(*) DESC, min(seq) LIMIT 1)) "
                            "RETURNING size")
                result.evicted += 1
                result.evicted_bytes += cur.fetchone()["size"]
        return result

    def quarantine_list(self) -> list[QuarantineEntry]:
        rows = self._rows("listing the quarantine", "SELECT * FROM quarantine ORDER BY seq")
        return [QuarantineEntry(id=r["id"], webhook=r["webhook"], received_at=r["received_at"], reason=r["reason"],
                                headers=json.loads(r["headers"]), body=bytes(r["body"]), source=r["source"])
                for r in rows]

    def quarantine_remove(self, entry_id: str) -> bool:
        return self._count("removing a quarantine entry", "DELETE FROM quarantine WHERE id = %s", (entry_id,),
                           durable=True) > 0

    # -- metrics -----------------------------------------------------------------------------------
    def stats(self) -> StoreStats:
        """Exact counts, except processed events and done jobs in tables above EXACT_COUNT_LIMIT rows, which
        are the planner's estimate minus the exact counts of the other statuses (partial indexes)."""
        stats = StoreStats()
        with self._conn("reading stats") as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT relname, reltuples FROM pg_class WHERE relnamespace = %s::regnamespace "
                        "AND relname IN ('events', 'jobs')", (sql.Identifier(self.schema).as_string(conn),))
            estimate = {r["relname"]: r["reltuples"] for r in cur.fetchall()}
            if estimate.get("events", 0) > EXACT_COUNT_LIMIT:
                cur.execute("SELECT (SELECT count(*) FROM events WHERE status = 'pending') AS pending, "
                            "(SELECT count(*) FROM events WHERE status = 'stale') AS stale, "
                            "(SELECT count(*) FROM events WHERE status = 'failed') AS failed")
                row = cur.fetchone()
                counts = {**row, "processed": max(0, int(estimate["events"]) - sum(row.values()))}
            else:
                cur.execute("SELECT status, count(*) AS n FROM events GROUP BY status")
                counts = {r["status"]: r["n"] for r in cur.fetchall()}
            stats.events = {k: v for k, v in counts.items() if v}
            cur.execute("SELECT CASE WHEN attempts > 0 THEN 'failed' ELSE 'pending' END AS status, count(*) AS n "
                        "FROM jobs WHERE status = 'pending' GROUP BY 1 UNION ALL "
                        "SELECT 'dead', count(*) FROM jobs WHERE status = 'dead'")
            jobs = {r["status"]: r["n"] for r in cur.fetchall()}
            if estimate.get("jobs", 0) > EXACT_COUNT_LIMIT:
                jobs["done"] = max(0, int(estimate["jobs"]) - sum(jobs.values()))
            else:
                cur.execute("SELECT count(*) AS n FROM jobs WHERE status = 'done'")
                jobs["done"] = cur.fetchone()["n"]
            stats.jobs = {k: v for k, v in jobs.items() if v}
            cur.execute("SELECT count(*) AS n, COALESCE(sum(size), 0) AS total FROM quarantine")
            row = cur.fetchone()
            stats.quarantine_entries, stats.quarantine_bytes = row["n"], int(row["total"])
        return stats


def open_backend(config: StoreConfig) -> PostgresStore:
    """The store for a postgresql:// or postgres:// URL (engine.store.open_store)."""
    return PostgresStore(config.url, group=config.group, spool_dir=config.spool_dir, password=config.password,
                         ca_file=config.ca_file, cert_file=config.cert_file, key_file=config.key_file)
