"""State of `sequence`, `new_value` and `absence` rules in SQLite: a mixin for SQLiteStore (which provides
`_tx()` and `_read()`), implementing engine.store.state.DetectionStateStore.

Every operation is one `BEGIN IMMEDIATE` transaction, so processes sharing the file never interleave.
`state_counts` keeps the number of groups / timers per rule and kind, so a cap costs one indexed read.
new_value keeps one narrow row per (group, value) in a WITHOUT ROWID table keyed by the group's integer id,
which is what makes a million pairs cheap (bench/stateful.py measures the bytes per pair).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from engine.store import sequence
from engine.store.state import (CAPPED, KNOWN, LEARNING, NEW, REPLAYED, RUNNING, STARTED, NewValueLimits,
                                NewValueResult, SequenceEvent, SequenceLimits, SequenceResult, Timer)

MIGRATION = """
    CREATE TABLE state_sequences (
        rule_id TEXT NOT NULL, group_key TEXT NOT NULL, state TEXT NOT NULL, expires_at REAL NOT NULL,
        PRIMARY KEY (rule_id, group_key));
    CREATE INDEX state_sequences_expiry ON state_sequences(expires_at);
    CREATE TABLE state_counts (kind TEXT NOT NULL, rule_id TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (kind, rule_id));
    CREATE TABLE state_nv_groups (
        id INTEGER PRIMARY KEY, rule_id TEXT NOT NULL, group_key TEXT NOT NULL, since REAL NOT NULL,
        last REAL NOT NULL, expires_at REAL NOT NULL, new_jti TEXT NOT NULL DEFAULT '',
        UNIQUE (rule_id, group_key));
    CREATE INDEX state_nv_groups_expiry ON state_nv_groups(expires_at);
    CREATE TABLE state_nv_values (
        gid INTEGER NOT NULL, value TEXT NOT NULL, until REAL NOT NULL, PRIMARY KEY (gid, value)) WITHOUT ROWID;
    CREATE TABLE state_timers (
        rule_id TEXT NOT NULL, group_key TEXT NOT NULL, due_at REAL NOT NULL, fire_at REAL NOT NULL,
        started REAL NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (rule_id, group_key));
    CREATE INDEX state_timers_fire ON state_timers(fire_at);
"""

TABLES = ("state_sequences", "state_counts", "state_nv_groups", "state_nv_values", "state_timers")


def _count(conn: sqlite3.Connection, kind: str, rule_id: str) -> int:
    row = conn.execute("SELECT n FROM state_counts WHERE kind = ? AND rule_id = ?", (kind, rule_id)).fetchone()
    return row[0] if row else 0


def _add(conn: sqlite3.Connection, kind: str, rule_id: str, delta: int) -> None:
    if delta:
        conn.execute("INSERT INTO state_counts VALUES (?, ?, ?) ON CONFLICT(kind, rule_id) DO UPDATE SET n = n + ?",
                     (kind, rule_id, delta, delta))


class SQLiteDetectionMixin:
    """DetectionStateStore for SQLiteStore."""

    _tx: Any
    _read: Any

    # -- sequences ---------------------------------------------------------------------------------
    def sequence_offer(self, rule_id: str, group_key: str, event: SequenceEvent,
                       spec: SequenceLimits, now: float) -> SequenceResult:
        max_groups = spec.max_groups
        with self._tx() as conn:
            row = conn.execute("SELECT state FROM state_sequences WHERE rule_id = ? AND group_key = ?",
                               (rule_id, group_key)).fetchone()
            if row is None and _count(conn, "sequence", rule_id) >= max_groups:
                removed = conn.execute("DELETE FROM state_sequences WHERE rule_id = ? AND expires_at < ?",
                                       (rule_id, now)).rowcount
                _add(conn, "sequence", rule_id, -removed)
                if _count(conn, "sequence", rule_id) >= max_groups:
                    return SequenceResult(CAPPED)
            state, result = sequence.offer(json.loads(row[0]) if row else None, event, spec)
            if state is None:
                if row is not None:
                    conn.execute("DELETE FROM state_sequences WHERE rule_id = ? AND group_key = ?", (rule_id, group_key))
                    _add(conn, "sequence", rule_id, -1)
            else:
                conn.execute("INSERT OR REPLACE INTO state_sequences VALUES (?, ?, ?, ?)",
                             (rule_id, group_key, json.dumps(state), sequence.expires_at(state, spec)))
                if row is None:
                    _add(conn, "sequence", rule_id, 1)
        return result

    # -- new values --------------------------------------------------------------------------------
    def new_value_seen(self, rule_id: str, group_key: str, value: str, jti: str, time: float,
                       spec: NewValueLimits, now: float) -> NewValueResult:
        with self._tx() as conn:
            group = conn.execute("SELECT id, since, last, new_jti FROM state_nv_groups WHERE rule_id = ? AND "
                                 "group_key = ?", (rule_id, group_key)).fetchone()
            if group is None:
                if not _nv_room(conn, rule_id, spec.max_groups, now):
                    return NewValueResult(CAPPED)
                gid = conn.execute("INSERT INTO state_nv_groups (rule_id, group_key, since, last, expires_at) "
                                   "VALUES (?, ?, ?, ?, ?)", (rule_id, group_key, time, time,
                                                              time + spec.lookback)).lastrowid
                _add(conn, "new_value", rule_id, 1)
                since, last = time, time
            else:
                gid, since, last, new_jti = group
                if new_jti == jti:
                    return NewValueResult(REPLAYED, since)
                if last + spec.lookback < time:  # nothing of the group is within the lookback: it starts anew
                    conn.execute("DELETE FROM state_nv_values WHERE gid = ?", (gid,))
                    since = time
            result = _nv_record(conn, gid, value, jti, time, since, spec)
            last = max(last, time)
            conn.execute("UPDATE state_nv_groups SET since = ?, last = ?, expires_at = ? WHERE id = ?",
                         (since, last, last + spec.lookback, gid))
        return result

    # -- absence timers ----------------------------------------------------------------------------
    def timer_start(self, rule_id: str, group_key: str, due_at: float, started: float,
                    payload: dict[str, Any], max_timers: int) -> str:
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM state_timers WHERE rule_id = ? AND group_key = ?",
                            (rule_id, group_key)).fetchone():
                return RUNNING
            if _count(conn, "absence", rule_id) >= max_timers:
                return CAPPED
            conn.execute("INSERT INTO state_timers VALUES (?, ?, ?, ?, ?, ?)",
                         (rule_id, group_key, due_at, due_at, started, json.dumps(payload)))
            _add(conn, "absence", rule_id, 1)
        return STARTED

    def timer_cancel(self, rule_id: str, group_key: str) -> bool:
        with self._tx() as conn:
            removed = conn.execute("DELETE FROM state_timers WHERE rule_id = ? AND group_key = ?",
                                   (rule_id, group_key)).rowcount
            _add(conn, "absence", rule_id, -removed)
        return bool(removed)

    def timers_claim(self, now: float, lease: float, limit: int) -> list[Timer]:
        with self._tx() as conn:
            rows = conn.execute("SELECT rule_id, group_key, due_at, started, payload FROM state_timers "
                                "WHERE fire_at <= ? ORDER BY fire_at LIMIT ?", (now, limit)).fetchall()
            conn.executemany("UPDATE state_timers SET fire_at = ? WHERE rule_id = ? AND group_key = ?",
                             [(now + lease, row[0], row[1]) for row in rows])
        return [Timer(row[0], row[1], row[2], row[3], json.loads(row[4])) for row in rows]

    def timers_done(self, timers: list[Timer]) -> None:
        with self._tx() as conn:
            for timer in timers:
                removed = conn.execute("DELETE FROM state_timers WHERE rule_id = ? AND group_key = ? AND due_at = ?",
                                       (timer.rule_id, timer.group_key, timer.due_at)).rowcount
                _add(conn, "absence", timer.rule_id, -removed)

    # -- pruning -----------------------------------------------------------------------------------
    def prune_detections(self, now: float) -> int:
        """Delete timed-out sequences and new_value groups with nothing within their lookback."""
        with self._tx() as conn:
            removed = conn.execute("DELETE FROM state_sequences WHERE expires_at < ?", (now,)).rowcount
            conn.execute("DELETE FROM state_nv_values WHERE gid IN (SELECT id FROM state_nv_groups "
                         "WHERE expires_at < ?)", (now,))
            removed += conn.execute("DELETE FROM state_nv_groups WHERE expires_at < ?", (now,)).rowcount
            if removed:
                conn.execute("DELETE FROM state_counts WHERE kind IN ('sequence', 'new_value')")
                conn.execute("INSERT INTO state_counts SELECT 'sequence', rule_id, COUNT(*) FROM state_sequences "
                             "GROUP BY rule_id")
                conn.execute("INSERT INTO state_counts SELECT 'new_value', rule_id, COUNT(*) FROM state_nv_groups "
                             "GROUP BY rule_id")
        return removed


def _nv_room(conn: sqlite3.Connection, rule_id: str, cap: int, now: float) -> bool:
    if _count(conn, "new_value", rule_id) < cap:
        return True
    expired = [row[0] for row in conn.execute("SELECT id FROM state_nv_groups WHERE rule_id = ? AND expires_at < ? "
                                              "LIMIT 1000", (rule_id, now))]
    conn.executemany("DELETE FROM state_nv_values WHERE gid = ?", [(gid,) for gid in expired])
    conn.executemany("DELETE FROM state_nv_groups WHERE id = ?", [(gid,) for gid in expired])
    _add(conn, "new_value", rule_id, -len(expired))
    return _count(conn, "new_value", rule_id) < cap


def _nv_record(conn: sqlite3.Connection, gid: int, value: str, jti: str, time: float, since: float,
               spec: Any) -> NewValueResult:
    row = conn.execute("SELECT until FROM state_nv_values WHERE gid = ? AND value = ?", (gid, value)).fetchone()
    if row is not None and row[0] >= time:
        if time + spec.lookback > row[0]:
            conn.execute("UPDATE state_nv_values SET until = ? WHERE gid = ? AND value = ?",
                         (time + spec.lookback, gid, value))
        return NewValueResult(KNOWN, since)
    conn.execute("INSERT OR REPLACE INTO state_nv_values VALUES (?, ?, ?)", (gid, value, time + spec.lookback))
    conn.execute("DELETE FROM state_nv_values WHERE gid = ? AND until < ?", (gid, time))
    held = conn.execute("SELECT COUNT(*) FROM state_nv_values WHERE gid = ?", (gid,)).fetchone()[0]
    evicted = max(0, held - spec.max_values)
    if evicted:
        conn.execute("DELETE FROM state_nv_values WHERE gid = ? AND value IN (SELECT value FROM state_nv_values "
                     "WHERE gid = ? AND value != ? ORDER BY until LIMIT ?)", (gid, gid, value, evicted))
    if time - since < spec.learn_for:
        return NewValueResult(LEARNING, since, evicted)
    conn.execute("UPDATE state_nv_groups SET new_jti = ? WHERE id = ?", (jti, gid))
    return NewValueResult(NEW, since, evicted)
