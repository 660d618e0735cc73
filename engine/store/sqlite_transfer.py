"""`idhooks migrate` for SQLiteStore (engine/store/transfer.py): a mixin using its `_read()` and `_tx()`."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Iterator

from engine.store.base import Job, StoredEvent
from engine.store.transfer import (PAGE, CaptureRecord, DigestPeriod, NewValueRecord, SequenceRecord, SuppressionRecord,
                                   TimerRecord, WindowRecord)


class SQLiteTransferMixin:
    _read: Any
    _tx: Any

    def _pages(self, sql: str, args: tuple) -> Iterator[sqlite3.Row]:
        """Rows of `sql` (which must end in ORDER BY ...) a page at a time."""
        offset = 0
        while rows := self._read(f"{sql} LIMIT ? OFFSET ?", (*args, PAGE, offset)):
            yield from rows
            offset += len(rows)

    def export_events(self, since: float) -> Iterator[StoredEvent]:
        from engine.store.sqlite import _event_row  # sqlite.py imports this module

        for row in self._pages("SELECT * FROM events WHERE received_at >= ? OR status = 'pending' "
                               "ORDER BY received_at, jti", (since,)):
            yield _event_row(row)

    def export_jobs(self) -> Iterator[tuple[Job, float | None]]:
        from engine.store.sqlite import _job_row

        for row in self._pages("SELECT * FROM jobs ORDER BY created_at, id", ()):
            yield _job_row(row), row["done_at"]

    def export_windows(self, now: float) -> Iterator[WindowRecord]:
        for row in self._pages("SELECT * FROM state_windows WHERE expires_at > ? ORDER BY rule_id, group_key", (now,)):
            yield WindowRecord(row["rule_id"], row["group_key"], row["state"], row["expires_at"])

    def export_suppressions(self, now: float) -> Iterator[SuppressionRecord]:
        for row in self._pages("SELECT * FROM state_suppress WHERE until > ? ORDER BY rule_id, group_key", (now,)):
            yield SuppressionRecord(row["rule_id"], row["group_key"], row["until"], row["token"])

    def export_digests(self) -> Iterator[DigestPeriod]:
        for p in self._pages("SELECT * FROM state_digest_periods ORDER BY rule_id, period_start", ()):
            items = [(r["jti"], r["time"], json.loads(r["item"])) for r in self._pages(
                "SELECT * FROM state_digest_items WHERE rule_id = ? AND period_start = ? ORDER BY time, jti",
                (p["rule_id"], p["period_start"]))]
            yield DigestPeriod(p["rule_id"], p["period_start"], p["period_end"], p["due_at"], p["total"], items)

    def export_sequences(self, now: float) -> Iterator[SequenceRecord]:
        for r in self._pages("SELECT * FROM state_sequences WHERE expires_at > ? ORDER BY rule_id, group_key", (now,)):
            yield SequenceRecord(r["rule_id"], r["group_key"], r["state"], r["expires_at"])

    def export_new_values(self, now: float) -> Iterator[NewValueRecord]:
        for g in self._pages("SELECT * FROM state_nv_groups WHERE expires_at > ? ORDER BY id", (now,)):
            values = [(r["value"], r["until"]) for r in self._pages(
                "SELECT value, until FROM state_nv_values WHERE gid = ? ORDER BY value", (g["id"],))]
            yield NewValueRecord(g["rule_id"], g["group_key"], g["since"], g["last"], g["new_jti"], g["expires_at"],
                                 values)

    def export_timers(self) -> Iterator[TimerRecord]:
        for r in self._pages("SELECT * FROM state_timers ORDER BY rule_id, group_key", ()):
            yield TimerRecord(r["rule_id"], r["group_key"], r["due_at"], r["started"], json.loads(r["payload"]))

    def export_captures(self) -> Iterator[CaptureRecord]:
        for r in self._pages("SELECT * FROM captures WHERE captured != '{}' ORDER BY ref", ()):
            yield CaptureRecord(r["ref"], json.loads(r["captured"]), r["last_event_at"])

    def import_capture(self, record: CaptureRecord) -> bool:
        with self._tx() as conn:  # a key this deployment only noted (no values yet) takes the copied values
            return conn.execute(
                "INSERT INTO captures (ref, captured, last_event_at) VALUES (?, ?, ?) ON CONFLICT(ref) DO UPDATE "
                "SET captured = excluded.captured, last_event_at = MAX(last_event_at, excluded.last_event_at) "
                "WHERE captured = '{}'", (record.ref, json.dumps(record.values), record.last_event_at)).rowcount > 0

    def import_sequence(self, record: SequenceRecord) -> bool:
        with self._tx() as conn:
            if not conn.execute("INSERT OR IGNORE INTO state_sequences VALUES (?, ?, ?, ?)",
                                (record.rule_id, record.group_key, record.state, record.expires_at)).rowcount:
                return False
            _count(conn, "sequence", record.rule_id)
        return True

    def import_new_value(self, record: NewValueRecord) -> bool:
        with self._tx() as conn:
            cursor = conn.execute("INSERT OR IGNORE INTO state_nv_groups (rule_id, group_key, since, last, expires_at, "
                                  "new_jti) VALUES (?, ?, ?, ?, ?, ?)", (record.rule_id, record.group_key,
                                                                        record.since, record.last, record.expires_at,
                                                                        record.new_jti))
            if not cursor.rowcount:
                return False
            conn.executemany("INSERT OR IGNORE INTO state_nv_values VALUES (?, ?, ?)",
                             [(cursor.lastrowid, value, until) for value, until in record.values])
            _count(conn, "new_value", record.rule_id)
        return True

    def import_timer(self, record: TimerRecord) -> bool:
        with self._tx() as conn:
            if not conn.execute("INSERT OR IGNORE INTO state_timers VALUES (?, ?, ?, ?, ?, ?)",
                                (record.rule_id, record.group_key, record.due_at, record.due_at, record.started,
                                 json.dumps(record.payload))).rowcount:
                return False
            _count(conn, "absence", record.rule_id)
        return True

    def import_event(self, event: StoredEvent) -> bool:
        with self._tx() as conn:
            return conn.execute(
                "INSERT OR IGNORE INTO events (jti, webhook, iat_ms, received_at, uris, body, status, decisions, "
                "processed_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (event.jti, event.webhook, event.iat_ms, event.received_at, json.dumps(list(event.uris)), event.body,
                 event.status, json.dumps(event.decisions) if event.decisions is not None else None,
                 event.processed_at)).rowcount > 0

    def import_job(self, job: Job, done_at: float | None = None) -> bool:
        with self._tx() as conn:
            return conn.execute(
                "INSERT OR IGNORE INTO jobs (id, key, destination, payload, status, attempts, created_at, due_at, "
                "last_error, last_response, done_at, window_start, order_key, order_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.key, job.destination, json.dumps(job.to_json()),
                 "pending" if job.status == "failed" else job.status, job.attempts, job.created_at, job.due_at,
                 job.last_error, job.last_response, done_at, job.window_start, job.order_key,
                 job.received_at if job.received_at is not None else job.created_at)).rowcount > 0

    def import_window(self, rule_id: str, group_key: str, state: str, expires_at: float) -> bool:
        with self._tx() as conn:
            if not conn.execute("INSERT OR IGNORE INTO state_windows VALUES (?, ?, ?, ?)",
                                (rule_id, group_key, state, expires_at)).rowcount:
                return False
            conn.execute("INSERT INTO state_groups VALUES (?, 1) "
                         "ON CONFLICT(rule_id) DO UPDATE SET groups = groups + 1", (rule_id,))
        return True

    def import_suppression(self, rule_id: str, group_key: str, until: float, token: str) -> bool:
        with self._tx() as conn:
            return conn.execute("INSERT OR IGNORE INTO state_suppress VALUES (?, ?, ?, ?)",
                                (rule_id, group_key, until, token)).rowcount > 0

    def import_digest_total(self, rule_id: str, period_start: float, total: int) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE state_digest_periods SET total = ? WHERE rule_id = ? AND period_start = ?",
                         (total, rule_id, period_start))


def _count(conn: sqlite3.Connection, kind: str, rule_id: str) -> None:
    """One more group or timer of the rule in state_counts (the caps read it)."""
    conn.execute("INSERT INTO state_counts VALUES (?, ?, 1) ON CONFLICT(kind, rule_id) DO UPDATE SET n = n + 1",
                 (kind, rule_id))
