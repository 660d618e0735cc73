"""SQLite backend: one file in WAL mode, the embedded default.

Intake uses group commit: `ingest()` hands the event to one writer thread and waits; the writer commits
every event queued meanwhile in one transaction and then wakes each caller. Every caller still returns only
after the commit that holds its event, so a 2xx always means durable, while concurrent requests share the
cost of one fsync. Other writes (claims, acks) use short `BEGIN IMMEDIATE` transactions on per-thread
connections with a busy timeout.

Only the intake writer commits with `synchronous=FULL` (an fsync per commit): its commit is the promise
behind a 2xx. Every other write (leases, decisions and jobs, acks, retries) commits with NORMAL: it
survives a killed process (WAL in the OS cache) and is made durable by the next intake fsync or
checkpoint; after a power loss it can only be redone (an event re-evaluated into the same job keys, a job
delivered again with the same Idempotency-Key), never lost. Writers of this process take turns on a lock,
which hands over at once where SQLite's busy handler would sleep and poll.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from engine.errors import StoreError
from engine.store.state_sqlite import MIGRATION as STATE_MIGRATION
from engine.store.state_sqlite import SQLiteStateMixin
from engine.store.detections_sqlite import MIGRATION as DETECTIONS_MIGRATION
from engine.store.detections_sqlite import SQLiteDetectionMixin
from engine.store.handoff import EventHandoff, JobHandoff, handed
from engine.store.sqlite_transfer import SQLiteTransferMixin
from engine.config.settings import StoreConfig
from engine.store.base import (ACCEPTED, DUPLICATE, STALE, IncomingEvent, Job, NewJob, QuarantineEntry,
                               QuarantineResult, Store, StoredEvent, StoreStats, SubscriptionRecord, strict_json,
                               appending)

_MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE events (
        jti TEXT PRIMARY KEY, webhook TEXT NOT NULL, iat_ms REAL NOT NULL, received_at REAL NOT NULL,
        uris TEXT NOT NULL, body BLOB NOT NULL, status TEXT NOT NULL, decisions TEXT,
        processed_at REAL, lease_owner TEXT, lease_until REAL NOT NULL DEFAULT 0);
    CREATE INDEX events_pending ON events(status, received_at);
    CREATE INDEX events_received ON events(received_at);
    CREATE TABLE seen_jti (jti TEXT PRIMARY KEY, seen_at REAL NOT NULL);
    CREATE INDEX seen_jti_at ON seen_jti(seen_at);
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, destination TEXT NOT NULL, payload TEXT NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
        due_at REAL NOT NULL, last_error TEXT NOT NULL DEFAULT '', last_response TEXT NOT NULL DEFAULT '',
        lease_owner TEXT NOT NULL DEFAULT '', lease_until REAL NOT NULL DEFAULT 0, done_at REAL);
    CREATE INDEX jobs_due ON jobs(status, due_at);
    CREATE TABLE subscriptions (
        webhook TEXT NOT NULL, topic TEXT NOT NULL, mode TEXT NOT NULL, at REAL NOT NULL,
        lease_expires_at REAL, reason TEXT NOT NULL DEFAULT '', PRIMARY KEY (webhook, topic, mode));
    CREATE TABLE quarantine (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, webhook TEXT NOT NULL,
        received_at REAL NOT NULL, reason TEXT NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL,
        size INTEGER NOT NULL);
    """,
    # 2: stateful rules (thresholds, suppression, digests)
    STATE_MIGRATION,
    # 3: de-duplication is the stored event itself (retention >= the dedup window), so the marks table goes
    "DROP TABLE seen_jti",
    # 4: a re-queued dead letter's retry window starts again (NULL: at created_at)
    "ALTER TABLE jobs ADD COLUMN window_start REAL",
    # 5: a full quarantine evicts from the source (sender address) holding the most entries
    "ALTER TABLE quarantine ADD COLUMN source TEXT NOT NULL DEFAULT ''; "
    "CREATE INDEX quarantine_source ON quarantine(source, seq)",
    # 6: ordered delivery (`ordered_by:`: jobs of one order key go one at a time, in event order) and the
    #    values `capture:` keeps per key, with the time of the key's newest event (pruned with it)
    """
    ALTER TABLE jobs ADD COLUMN order_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN order_at REAL NOT NULL DEFAULT 0;
    CREATE INDEX jobs_order ON jobs(order_key, status, order_at) WHERE order_key != '';
    CREATE TABLE captures (ref TEXT PRIMARY KEY, captured TEXT NOT NULL DEFAULT '{}', last_event_at REAL NOT NULL)
    """,
    # 7: an event whose evaluation or recording failed is retried a bounded number of times, then 'failed'
    "ALTER TABLE events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    # 8: sequence, new_value and absence rules
    DETECTIONS_MIGRATION,
    # 9: a claim walks due jobs in its ORDER BY (due_at, created_at) order and stops at its LIMIT; with
    #    (status, due_at) alone it sorted every due job first, so each claim cost grew with the backlog
    "DROP INDEX jobs_due; CREATE INDEX jobs_due ON jobs(status, due_at, created_at)",
]


_JOB_FILTERS = {None: "1", "pending": "status = 'pending'", "failed": "status = 'pending' AND attempts > 0",
                "dead": "status = 'dead'", "done": "status = 'done'"}


def _low(since: float | None) -> float:
    return since if since is not None else float("-inf")


def _high(until: float | None) -> float:
    return until if until is not None else float("inf")


def _event_row(row: sqlite3.Row) -> StoredEvent:
    return StoredEvent(jti=row["jti"], webhook=row["webhook"], iat_ms=row["iat_ms"],
                       received_at=row["received_at"], uris=tuple(json.loads(row["uris"])),
                       body=bytes(row["body"]), status=row["status"],
                       decisions=json.loads(row["decisions"]) if row["decisions"] else None,
                       processed_at=row["processed_at"], attempts=row["attempts"])


def _leased(event: IncomingEvent) -> StoredEvent:
    """The stored form of an event just committed as pending (for the processor's hand-off)."""
    return StoredEvent(jti=event.jti, webhook=event.webhook, iat_ms=event.iat_ms, received_at=event.received_at,
                       uris=event.uris, body=event.body, status="pending")


def _event_rows(batch: list[_Pending], lease: tuple[str, float] | None) -> list[tuple]:
    """The rows of a batch's events for the events table, the second copy of a jti left out (a duplicate);
    with `lease` = (owner, seconds), each pending one is stored leased to the processor it is handed to."""
    rows: list[tuple] = []
    first: set[str] = set()
    for item in batch:
        event = item.event
        if event.jti in first:
            continue
        first.add(event.jti)
        stale = event.iat_ms / 1000.0 < event.received_at - item.window
        owner, until = (lease[0], event.received_at + lease[1]) if lease and not stale else (None, 0.0)
        rows.append((event.jti, event.webhook, event.iat_ms, event.received_at, json.dumps(list(event.uris)),
                     event.body, STALE if stale else "pending", owner, until))
    return rows


def _job_row(row: sqlite3.Row) -> Job:
    status = row["status"]
    if status == "pending" and row["attempts"] > 0:
        status = "failed"
    return Job(id=row["id"], key=row["key"], destination=row["destination"],
               **NewJob.fields_from_json(json.loads(row["payload"])), status=status, attempts=row["attempts"],
               created_at=row["created_at"], due_at=row["due_at"], last_error=row["last_error"],
               last_response=row["last_response"], lease_owner=row["lease_owner"], window_start=row["window_start"])


def job_id() -> str:
    """A new job's id: 32 hex digits, the first 12 the time in milliseconds, the other 20 random. New rows go to
    the end of the id index: with random ids every job inserted dirtied a page of it of its own, which the commit
    writes to the WAL (issue 14)."""
    return f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(80):020x}"


def _insert_jobs(conn: sqlite3.Connection, jobs: list[NewJob], now: float,
                 lease: tuple[str, float] | None = None) -> list[str | None]:
    """Insert pending jobs, due now; a key already queued is skipped (INSERT OR IGNORE on the unique key).
    An ordered job is placed by its event's arrival (order_at), then by insertion (rowid). With `lease`
    (owner, lease end), the jobs that may be handed (engine/store/handoff.handed) are stored leased to the owner.

    The new rows' ids, in the order of `jobs`; None for a job whose key was queued already (looked up only
    when some key was: a second statement per batch would hold the write lock longer, see _insert_rows)."""
    rows = [(job_id(), j.key, j.destination, strict_json(j.to_json(), f"job {j.key!r}"), now, now, j.order_key,
             j.received_at if j.received_at is not None else now,
             *(lease if lease is not None and handed(j) else ("", 0.0))) for j in jobs]
    inserted = 0
    for start in range(0, len(rows), 500):  # SQLite allows 32,766 parameters per statement
        chunk = rows[start:start + 500]
        inserted += conn.execute(
            "INSERT OR IGNORE INTO jobs (id, key, destination, payload, status, created_at, due_at, order_key, "
            "order_at, lease_owner, lease_until) VALUES "
            + ",".join(["(?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)"] * len(chunk)),
            [value for row in chunk for value in row]).rowcount
    touched: dict[str, float] = {}
    for job in jobs:
        if job.ordered_by:
            at = job.received_at if job.received_at is not None else now
            touched[job.capture_ref] = max(at, touched.get(job.capture_ref, at))
    if touched:
        conn.executemany("INSERT INTO captures (ref, last_event_at) VALUES (?, ?) ON CONFLICT(ref) DO UPDATE "
                         "SET last_event_at = max(last_event_at, excluded.last_event_at)", list(touched.items()))
    ids: list[str | None] = [row[0] for row in rows]
    if inserted < len(rows):
        stored = {row[0] for row in conn.execute("SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
                                                 (json.dumps(ids),))}
        ids = [job_id if job_id in stored else None for job_id in ids]
    return ids


_FIRST_OF_ITS_ORDER = (
    "(j.order_key = '' OR NOT EXISTS (SELECT 1 FROM jobs AS e WHERE e.order_key = j.order_key "
    "AND e.status = 'pending' AND (e.order_at < j.order_at OR (e.order_at = j.order_at AND e.rowid < j.rowid))))")
"""An ordered job is claimable only when no earlier job of its order key is still pending (queued, leased or
failed and waiting for a retry): delivered or dead letters no longer hold it back."""

_CLAIM_JOBS = (
    "UPDATE jobs SET lease_owner = ?, lease_until = ? WHERE id IN ("
    "SELECT id FROM jobs AS j WHERE status = 'pending' AND due_at <= ? AND lease_until <= ?{where} "
    f"AND {_FIRST_OF_ITS_ORDER} ORDER BY due_at, created_at LIMIT ?) RETURNING *")
"""The delivery worker's claim: the first due jobs in index order (jobs_due), leased to one owner."""


class _Pending:
    """One event waiting for the group commit. `done` is a plain lock, held until the writer releases it:
    one waiter and one signal need no Event (a Condition, a waiter lock and a deque per event; issue 14)."""

    __slots__ = ("event", "window", "done", "result", "error")

    def __init__(self, event: IncomingEvent, window: float) -> None:
        self.event, self.window = event, window
        self.done = threading.Lock()
        self.done.acquire()
        self.result: str | None = None
        self.error: BaseException | None = None

    def finish(self, result: str | None, error: BaseException | None) -> None:
        """Called by the writer once the batch holding this event is committed or failed."""
        self.result, self.error = result, error
        self.done.release()


class _CalledBack(_Pending):
    """An `ingest_soon` event: the writer calls its caller back instead of releasing a waiting thread."""

    __slots__ = ("callback",)

    def __init__(self, event: IncomingEvent, window: float,
                 callback: Callable[[str | None, BaseException | None], None]) -> None:
        self.event, self.window, self.callback = event, window, callback

    def finish(self, result: str | None, error: BaseException | None) -> None:
        self.callback(result, error)


class _WriteLock:
    """Writers of one SQLite file take turns through this: a thread lock within the process, and an exclusive
    `flock` on `<file>-writelock` across processes (`serve --processes N`, the CLI). With SQLite's own lock
    alone, a process that finds the file locked sleeps and retries (its busy handler: 1, 2, 5, ... 100 ms),
    which cost `--processes 2` more than it gained; a process blocked in flock is woken as soon as the lock
    is free. SQLite's lock and busy timeout still guard any writer that does not take this one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = threading.Lock()
        self._fd: int | None = None  # opened at first use, again after close(): a closed store may be reused

    def __enter__(self) -> None:
        self._thread.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        except OSError as exc:
            self._thread.release()
            raise sqlite3.OperationalError(f"cannot lock {self.path}: {exc.strerror}") from None
        except BaseException:
            self._thread.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def close(self) -> None:
        with self._thread:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class SQLiteStore(SQLiteStateMixin, SQLiteDetectionMixin, SQLiteTransferMixin, Store):
    """The embedded store. `path` is a file; its folder is created when missing."""

    def __init__(self, path: str | Path, *, batch_limit: int = 256) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of {self.path}: {exc.strerror}") from None
        self._write_lock = _WriteLock(self.path.with_name(self.path.name + "-writelock"))
        self._local = threading.local()
        self._writing: sqlite3.Connection | None = None  # every write of this process, under the write lock
        self._synchronous = "NORMAL"
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._migrate()
        self._batch_limit = batch_limit
        self._handoff: EventHandoff | None = None
        self._job_handoff: JobHandoff | None = None
        self._job_handoff_lock = threading.Lock()  # held from leasing a batch of jobs to handing it over
        self._handoff_lock = threading.Lock()  # held by the writer from leasing a batch to handing it over
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-group-commit", daemon=True)
        self._writer.start()

    # -- connections -------------------------------------------------------------------------------
    def _connect(self, synchronous: str = "NORMAL") -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store {self.path}: {exc}") from None
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the SQLite store {self.path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _writer_conn(self, synchronous: str = "NORMAL") -> sqlite3.Connection:
        """The one connection this process writes with; call with the write lock held.

        Why one: in WAL mode a connection throws its whole page cache away when it begins a transaction after
        any other connection wrote. With a connection per thread (group commit, processor, each delivery
        worker), every write began cold and read its pages again (~20 preads per delivered event; issue 14).
        Only the intake's commits ask for `synchronous=FULL`; the setting is switched when the caller changes."""
        if self._closed:
            raise StoreError(f"the SQLite store {self.path} is closed")
        conn = self._writing
        if conn is None:
            conn = self._writing = self._connect()
            self._synchronous = "NORMAL"
        if synchronous != self._synchronous:
            conn.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous = synchronous
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._write_lock:
                conn = self._writer_conn()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # the connection is shared: never leave it inside a transaction
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path}: {exc}") from None

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path}: {exc}") from None

    def _migrate(self) -> None:
        """Bring the schema to the newest version; each step commits with its version number."""
        with self._tx() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(_MIGRATIONS):
                raise StoreError(f"{self.path} has schema version {version}, newer than this idhooks "
                                 f"({len(_MIGRATIONS)}): upgrade idhooks")
            for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    def schema_version(self) -> int:
        return self._read("PRAGMA user_version")[0][0]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._writer.join(timeout=10)
        with self._connections_lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()
        self._writing = None
        self._write_lock.close()

    def take_over_leases(self) -> int:
        """One serve process per SQLite file: whatever is leased belonged to a process that is gone."""
        with self._tx() as conn:
            events = conn.execute("UPDATE events SET lease_owner = NULL, lease_until = 0 "
                                  "WHERE status = 'pending' AND lease_until > 0").rowcount
            jobs = conn.execute("UPDATE jobs SET lease_owner = '', lease_until = 0 "
                                "WHERE status = 'pending' AND lease_until > 0").rowcount
        return events + jobs

    def check_writable(self) -> None:
        """Commit a real write to the database file: rewrite its schema version with the same value (a temporary
        table would live in memory and succeed on a full disk)."""
        with self._tx() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute(f"PRAGMA user_version = {int(version)}")

    def hand_over_new_events(self, handoff: EventHandoff | None) -> bool:
        with self._handoff_lock:  # once this returns, no batch is still being leased to the previous one
            self._handoff = handoff
        return True

    def hand_over_new_jobs(self, handoff: JobHandoff | None) -> bool:
        with self._job_handoff_lock:  # once this returns, no batch is still being leased to the previous one
            self._job_handoff = handoff
        return True

    def release_jobs(self, owner: str, job_ids: list[str]) -> None:
        if job_ids:
            self._write("UPDATE jobs SET lease_owner = '', lease_until = 0 WHERE status = 'pending' AND "
                        "lease_owner = ? AND id IN (SELECT value FROM json_each(?))", (owner, json.dumps(job_ids)))

    def release_leases(self, owner: str, jtis: list[str]) -> None:
        if jtis:
            self._write("UPDATE events SET lease_owner = NULL, lease_until = 0 WHERE status = 'pending' AND "
                        "lease_owner = ? AND jti IN (SELECT value FROM json_each(?))", (owner, json.dumps(jtis)))

    # -- intake (group commit) ---------------------------------------------------------------------
    def ingest(self, event: IncomingEvent, dedup_window: float) -> str:
        if self._closed:
            raise StoreError("the store is closed")
        pending = _Pending(event, dedup_window)
        self._queue.put(pending)
        pending.done.acquire()  # released by the writer once the batch is committed or failed
        if pending.error is not None:
            raise StoreError(f"could not commit event {event.jti!r}: {pending.error}")
        return str(pending.result)  # set by the writer thread before `done`

    def ingest_soon(self, event: IncomingEvent, dedup_window: float,
                    done: Callable[[str | None, BaseException | None], None]) -> bool:
        """Queue the event for the next group commit without waiting: the writer thread calls
        `done(outcome, None)` once it is committed, or `done(None, error)`. For the async intake, which awaits
        the commit in its event loop instead of blocking a thread per request (issue 14)."""
        if self._closed:
            raise StoreError("the store is closed")
        self._queue.put(_CalledBack(event, dedup_window, done))
        return True

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            self._commit_batch([first], gather=True)

    def _gather(self, batch: list[_Pending]) -> None:
        """Add what is queued to `batch`, up to the batch limit (a queued close stays queued for the loop)."""
        while len(batch) < self._batch_limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._queue.put(None)
                return
            batch.append(item)

    def _commit_batch(self, batch: list[_Pending], gather: bool = False) -> None:
        with self._handoff_lock:
            self._commit_leased(batch, self._handoff, gather)

    def _commit_leased(self, batch: list[_Pending], handoff: EventHandoff | None, gather: bool = False) -> None:
        """Commit `batch` (with `gather`, and what is queued once the write lock is held) and answer each event.

        Why the batch is gathered after the lock is taken: with `serve --processes N` a writer waits for the
        others' commits (each ending in an fsync), and the events that arrive meanwhile would otherwise wait for
        one more commit of their own. Taken into this one, they cost one fsync and one turn of the lock between
        them (issue 14: the write lock was held most of the time with two processes, ~3 events a commit)."""
        conn: sqlite3.Connection | None = None
        try:
            with self._write_lock:
                conn = self._writer_conn("FULL")
                if gather:
                    self._gather(batch)
                lease = (handoff.owner, handoff.lease) if handoff is not None and handoff.admits(len(batch)) else None
                rows = _event_rows(batch, lease)
                inserted = self._insert_rows(conn, rows)
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets an answer, whatever happened
            if conn is not None and conn.in_transaction:  # only if the statement was interrupted before it finished
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            for item in batch:
                item.finish(None, exc)
            return
        status = {row[0]: row[6] for row in rows}
        results: list[str] = []
        for item in batch:
            jti = item.event.jti
            if jti in inserted:
                inserted.discard(jti)  # a later copy in this batch is a duplicate
                results.append(STALE if status[jti] == STALE else ACCEPTED)
            else:
                results.append(DUPLICATE)
        if lease is not None and handoff is not None:
            handoff.put([_leased(item.event) for item, result in zip(batch, results) if result == ACCEPTED])
        for item, result in zip(batch, results):
            item.finish(result, None)

    @staticmethod
    def _insert_rows(conn: sqlite3.Connection, rows: list[tuple]) -> set[str]:
        """Insert the batch's new events with one statement and return the jtis it inserted; a jti still
        stored is a duplicate (retention >= the dedup window) and is skipped. No BEGIN/COMMIT, no RETURNING
        and, unless the batch held a duplicate, no second statement: each SQLite step gives the GIL away and
        must win it back while this process holds the write lock, ~0.5 ms per step under load (measured:
        RETURNING, or a SELECT of the known jtis first, held the lock about twice as long; issue 14)."""
        cursor = conn.execute(
            "INSERT INTO events (jti, webhook, iat_ms, received_at, uris, body, status, lease_owner, lease_until) "
            "VALUES " + ",".join(["(?,?,?,?,?,?,?,?,?)"] * len(rows)) + " ON CONFLICT(jti) DO NOTHING",
            [value for row in rows for value in row])
        count = cursor.rowcount
        if count == len(rows):
            return {row[0] for row in rows}
        if count == 0:
            return set()
        # Some were duplicates. A new row's rowid is one more than the largest, and this process holds the write
        # lock: the rows this statement inserted are the `count` newest.
        inserted = {row[0] for row in conn.execute("SELECT jti FROM events WHERE rowid > ?",
                                                   (cursor.lastrowid - count,))}
        if len(inserted) != count or not inserted <= {row[0] for row in rows}:
            raise sqlite3.OperationalError("cannot tell which events of the batch were stored")
        return inserted

    # -- events ------------------------------------------------------------------------------------
    def get_event(self, jti: str) -> StoredEvent | None:
        rows = self._read("SELECT * FROM events WHERE jti = ?", (jti,))
        return _event_row(rows[0]) if rows else None

    def list_events(self, since: float | None = None, limit: int = 100,
                    status: str | None = None) -> list[StoredEvent]:
        where, args = ("", ()) if status is None else (" AND status = ?", (status,))
        rows = self._read(f"SELECT * FROM events WHERE received_at >= ?{where} ORDER BY received_at DESC, jti "
                          "LIMIT ?", (since if since is not None else float("-inf"), *args, limit))
        return [_event_row(r) for r in rows]

    def events_before(self, before: tuple[float, str] | None, since: float | None, until: float | None,
                      limit: int) -> list[StoredEvent]:
        where, args = ["received_at >= ?", "received_at <= ?"], [_low(since), _high(until)]
        if before is not None:
            where.append("(received_at < ? OR (received_at = ? AND jti > ?))")
            args += [before[0], before[0], before[1]]
        rows = self._read(f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY received_at DESC, jti LIMIT ?",
                          (*args, limit))
        return [_event_row(r) for r in rows]

    def claim_events(self, owner: str, lease: float, limit: int, now: float) -> list[StoredEvent]:
        # One statement as its own transaction, so the write lock (which intake waits on) is held as briefly
        # as possible and no BEGIN/COMMIT round trips hand the GIL over twice more.
        rows = self._write(
            "UPDATE events SET lease_owner = ?, lease_until = ? WHERE jti IN (SELECT jti FROM events "
            "WHERE status = 'pending' AND lease_until <= ? ORDER BY received_at, jti LIMIT ?) RETURNING *",
            (owner, now + lease, now, limit))
        return sorted((_event_row(r) for r in rows), key=lambda e: (e.received_at, e.jti))

    def complete_event(self, jti: str, decisions: list[dict[str, Any]], jobs: list[NewJob], now: float) -> None:
        self.complete_events([(jti, decisions, jobs)], now)

    def complete_events(self, items: list[tuple[str, list[dict[str, Any]], list[NewJob]]], now: float) -> None:
        decisions = strict_json({jti: event_decisions for jti, event_decisions, _ in items}, "decisions")
        jobs = [job for _, _, event_jobs in items for job in event_jobs]
        record = ("UPDATE events SET status = 'processed', decisions = d.value, processed_at = ?, "
                  "lease_owner = NULL, lease_until = 0 FROM json_each(?) AS d WHERE events.jti = d.key")
        if not jobs:  # one statement is its own transaction (see claim_events)
            self._write(record, (now, decisions))
            return
        with self._job_handoff_lock:
            handoff = self._job_handoff
            count = sum(handed(job) for job in jobs) if handoff is not None else 0
            lease = (handoff.owner, now + handoff.lease) if handoff is not None and count and handoff.admits(count) \
                else None
            with self._tx() as conn:  # a fixed number of statements per batch: see _insert_rows
                ids = _insert_jobs(conn, jobs, now, lease)
                conn.execute(record, (now, decisions))
            if lease is not None and handoff is not None:
                owner, until = lease
                handoff.put([Job.queued(job, id=job_id, now=now, lease_owner=owner, lease_until=until)
                             for job, job_id in zip(jobs, ids) if job_id is not None and handed(job)])

    def append_decisions(self, items: Sequence[tuple[str, dict[str, Any]]], now: float) -> list[str]:
        jtis = json.dumps(sorted({jti for jti, _ in items}))
        with self._tx() as conn:
            rows = conn.execute("SELECT jti, decisions FROM events WHERE jti IN (SELECT value FROM json_each(?))",
                                (jtis,)).fetchall()
            changed, statuses = appending({r[0]: json.loads(r[1]) if r[1] else None for r in rows}, items, now)
            if changed:
                conn.execute("UPDATE events SET decisions = d.value FROM json_each(?) AS d WHERE events.jti = d.key",
                             (strict_json(changed, "decisions"),))
        return statuses

    def enqueue_jobs(self, jobs: list[NewJob], now: float) -> None:
        with self._tx() as conn:
            _insert_jobs(conn, jobs, now)

    def fail_event(self, jti: str, error: str, now: float, retry_at: float | None) -> None:
        if retry_at is not None:  # the lease end doubles as "not before": claims skip it until then
            self._write("UPDATE events SET attempts = attempts + 1, lease_owner = NULL, lease_until = ? "
                        "WHERE jti = ? AND status = 'pending'", (retry_at, jti))
            return
        self._write("UPDATE events SET attempts = attempts + 1, status = 'failed', decisions = ?, processed_at = ?, "
                    "lease_owner = NULL, lease_until = 0 WHERE jti = ? AND status = 'pending'",
                    (strict_json([{"error": error}], "a failure"), now, jti))

    def prune(self, now: float, retention: float, dedup_window: float) -> int:
        with self._tx() as conn:
            removed = conn.execute("DELETE FROM events WHERE received_at < ? AND status != 'pending'",
                                   (now - retention,)).rowcount
            conn.execute("DELETE FROM jobs WHERE status = 'done' AND done_at < ?", (now - retention,))
            conn.execute("DELETE FROM captures WHERE last_event_at < ?", (now - retention,))
        return removed

    def last_accepted(self) -> dict[str, float]:
        rows = self._read("SELECT webhook, MAX(received_at) FROM events GROUP BY webhook")
        return {r[0]: r[1] for r in rows}

    # -- delivery queue ----------------------------------------------------------------------------
    def claim_jobs(self, owner: str, lease: float, limit: int, now: float,
                   skip_destinations: frozenset[str] = frozenset()) -> list[Job]:
        skip = sorted(skip_destinations)
        marks = ",".join("?" * len(skip))
        where = f" AND destination NOT IN ({marks})" if skip else ""
        rows = self._write(_CLAIM_JOBS.format(where=where), (owner, now + lease, now, now, *skip, limit))
        return sorted((_job_row(r) for r in rows), key=lambda job: (job.due_at, job.created_at))

    def _write(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        """One statement as its own transaction: the delivery worker's hot path (claim, ack) costs one
        statement per write instead of BEGIN/.../COMMIT."""
        try:
            with self._write_lock:
                return self._writer_conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path}: {exc}") from None

    def _update_job(self, sql: str, args: tuple) -> None:
        self._write(sql, args)

    def ack_jobs(self, job_ids: list[str], now: float) -> None:
        if job_ids:
            self._update_job("UPDATE jobs SET status = 'done', attempts = attempts + 1, done_at = ?, lease_owner = '', "
                             f"lease_until = 0 WHERE id IN ({','.join('?' * len(job_ids))})", (now, *job_ids))

    def retry_job(self, job_id: str, due_at: float, error: str, response: str = "") -> None:
        self._update_job("UPDATE jobs SET attempts = attempts + 1, due_at = ?, last_error = ?, last_response = ?, "
                         "lease_owner = '', lease_until = 0 WHERE id = ?", (due_at, error, response, job_id))

    def dead_job(self, job_id: str, error: str, response: str = "") -> None:
        self._update_job("UPDATE jobs SET status = 'dead', attempts = attempts + 1, last_error = ?, "
                         "last_response = ?, lease_owner = '', lease_until = 0 WHERE id = ?",
                         (error, response, job_id))

    def capture_set(self, ref: str, values: Mapping[str, Any], now: float) -> None:
        with self._tx() as conn:
            row = conn.execute("SELECT captured FROM captures WHERE ref = ?", (ref,)).fetchone()
            merged = {**(json.loads(row[0]) if row else {}), **values}
            conn.execute("INSERT INTO captures (ref, captured, last_event_at) VALUES (?, ?, ?) ON CONFLICT(ref) "
                         "DO UPDATE SET captured = excluded.captured", (ref, json.dumps(merged), now))

    def captures(self, ref: str) -> dict[str, Any]:
        rows = self._read("SELECT captured FROM captures WHERE ref = ?", (ref,))
        return json.loads(rows[0][0]) if rows else {}

    def get_job(self, job_id: str) -> Job | None:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job_row(rows[0]) if rows else None

    def list_jobs(self, status: str | None = None, limit: int = 100) -> list[Job]:
        if status not in _JOB_FILTERS:
            raise ValueError(f"unknown job status {status!r}: use pending, failed, dead or done")
        rows = self._read(f"SELECT * FROM jobs WHERE {_JOB_FILTERS[status]} ORDER BY created_at DESC, id LIMIT ?",
                          (limit,))
        return [_job_row(r) for r in rows]

    def jobs_before(self, status: str | None, destination: str | None, before: tuple[float, str] | None,
                    limit: int) -> list[Job]:
        where, args = [_JOB_FILTERS[status]], []
        if destination is not None:
            where.append("destination = ?")
            args.append(destination)
        if before is not None:
            where.append("(created_at < ? OR (created_at = ? AND id > ?))")
            args += [before[0], before[0], before[1]]
        rows = self._read(f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY created_at DESC, id LIMIT ?",
                          (*args, limit))
        return [_job_row(r) for r in rows]

    def jobs_for_event(self, jti: str) -> list[Job]:
        # Keys are jti:rule:index, so the UNIQUE index on key answers this range query.
        rows = self._read("SELECT * FROM jobs WHERE key >= ? AND key < ? ORDER BY key", (jti + ":", jti + ";"))
        return [j for j in map(_job_row, rows) if j.jti == jti]

    def requeue_dead(self, job_id: str | None, now: float) -> int:
        where, args = ("status = 'dead' AND id = ?", (job_id,)) if job_id else ("status = 'dead'", ())
        with self._tx() as conn:
            return conn.execute(f"UPDATE jobs SET status = 'pending', due_at = ?, window_start = ?, attempts = 0 "
                                f"WHERE {where}", (now, now, *args)).rowcount

    def drop_dead(self, job_id: str) -> bool:
        with self._tx() as conn:
            return conn.execute("DELETE FROM jobs WHERE status = 'dead' AND id = ?", (job_id,)).rowcount > 0

    # -- subscriptions -----------------------------------------------------------------------------
    def record_subscription(self, record: SubscriptionRecord) -> None:
        self._update_job("INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?, ?, ?, ?)",
                         (record.webhook, record.topic, record.mode, record.at, record.lease_expires_at,
                          record.reason))

    def list_subscriptions(self) -> list[SubscriptionRecord]:
        rows = self._read("SELECT * FROM subscriptions ORDER BY webhook, topic, at")
        return [SubscriptionRecord(webhook=r["webhook"], topic=r["topic"], mode=r["mode"], at=r["at"],
                                   lease_expires_at=r["lease_expires_at"], reason=r["reason"]) for r in rows]

    def remove_subscription(self, webhook: str, topic: str, mode: str) -> bool:
        with self._tx() as conn:
            return conn.execute("DELETE FROM subscriptions WHERE webhook = ? AND topic = ? AND mode = ?",
                                (webhook, topic, mode)).rowcount > 0

    # -- quarantine --------------------------------------------------------------------------------
    def quarantine_add(self, entry: QuarantineEntry, max_entries: int, max_bytes: int) -> QuarantineResult:
        size = len(entry.body)
        if size > max_bytes or max_entries < 1:
            return QuarantineResult(stored=False)
        result = QuarantineResult()
        with self._tx() as conn:
            conn.execute("INSERT INTO quarantine (id, webhook, received_at, reason, headers, body, size, source) "
                         "VALUES (?,?,?,?,?,?,?,?)", (entry.id, entry.webhook, entry.received_at, entry.reason,
                                                     json.dumps(entry.headers), entry.body, size, entry.source))
            while True:
                count, total = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM quarantine").fetchone()
                if count <= max_entries and total <= max_bytes:
                    break
                seq, old_size = conn.execute(
                    "SELECT seq, size FROM quarantine WHERE source = (SELECT source FROM quarantine GROUP BY source "
                    "ORDER BY COUNT(*) DESC, MIN(seq) LIMIT 1) ORDER BY seq LIMIT 1").fetchone()
                conn.execute("DELETE FROM quarantine WHERE seq = ?", (seq,))
                result.evicted += 1
                result.evicted_bytes += old_size
        return result

    def quarantine_list(self) -> list[QuarantineEntry]:
        rows = self._read("SELECT * FROM quarantine ORDER BY seq")
        return [QuarantineEntry(id=r["id"], webhook=r["webhook"], received_at=r["received_at"], reason=r["reason"],
                                headers=json.loads(r["headers"]), body=bytes(r["body"]), source=r["source"])
                for r in rows]

    def quarantine_remove(self, entry_id: str) -> bool:
        with self._tx() as conn:
            return conn.execute("DELETE FROM quarantine WHERE id = ?", (entry_id,)).rowcount > 0

    # -- metrics -----------------------------------------------------------------------------------
    def stats(self) -> StoreStats:
        stats = StoreStats()
        for status, count in self._read("SELECT status, COUNT(*) FROM events GROUP BY status"):
            stats.events[status] = count
        for row in self._read("SELECT CASE WHEN status = 'pending' AND attempts > 0 THEN 'failed' ELSE status END, "
                              "COUNT(*) FROM jobs GROUP BY 1"):
            stats.jobs[row[0]] = row[1]
        count, total = self._read("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM quarantine")[0]
        stats.quarantine_entries, stats.quarantine_bytes = count, total
        return stats


def open_backend(config: StoreConfig) -> SQLiteStore:
    """The store for a `sqlite:///PATH` URL (engine.store.open_store)."""
    return SQLiteStore(config.url[len("sqlite:///"):])
