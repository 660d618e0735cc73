"""Stateful-rule state in SQLite: a mixin for SQLiteStore (which provides `_tx()` and `_read()`).

A group's window is one JSON row read and rewritten inside one `BEGIN IMMEDIATE` transaction, so two
processes sharing the file never lose a count. `state_groups` keeps the number of groups per rule, so the
`max_groups` cap costs one indexed read instead of a count over every group.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from engine.store import window
from engine.store.state import CAPPED, DigestBatch, Threshold, WindowEntry, WindowResult
from engine.store.detections_sqlite import TABLES as DETECTION_TABLES

MIGRATION = """
    CREATE TABLE state_windows (
        rule_id TEXT NOT NULL, group_key TEXT NOT NULL, state TEXT NOT NULL, expires_at REAL NOT NULL,
        PRIMARY KEY (rule_id, group_key));
    CREATE INDEX state_windows_expiry ON state_windows(rule_id, expires_at);
    CREATE TABLE state_groups (rule_id TEXT PRIMARY KEY, groups INTEGER NOT NULL);
    CREATE TABLE state_suppress (
        rule_id TEXT NOT NULL, group_key TEXT NOT NULL, until REAL NOT NULL, token TEXT NOT NULL,
        PRIMARY KEY (rule_id, group_key));
    CREATE INDEX state_suppress_until ON state_suppress(until);
    CREATE TABLE state_digest_periods (
        rule_id TEXT NOT NULL, period_start REAL NOT NULL, period_end REAL NOT NULL, due_at REAL NOT NULL,
        total INTEGER NOT NULL DEFAULT 0, kept INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (rule_id, period_start));
    CREATE TABLE state_digest_items (
        rule_id TEXT NOT NULL, period_start REAL NOT NULL, jti TEXT NOT NULL, time REAL NOT NULL,
        item TEXT NOT NULL, PRIMARY KEY (rule_id, period_start, jti));
"""

_TABLES = ("state_windows", "state_groups", "state_suppress", "state_digest_periods", "state_digest_items")


class SQLiteStateMixin:
    """engine.match.stateful.state.StateStore for SQLiteStore."""

    _tx: Any
    _read: Any
    prune_detections: Any

    # -- threshold windows -------------------------------------------------------------------------
    def window_add(self, rule_id: str, group_key: str, entry: WindowEntry, spec: Threshold,
                   now: float) -> WindowResult:
        with self._tx() as conn:
            row = conn.execute("SELECT state FROM state_windows WHERE rule_id = ? AND group_key = ?",
                               (rule_id, group_key)).fetchone()
            if row is None and not _has_room(conn, rule_id, spec.max_groups, now):
                return WindowResult(CAPPED)
            state, result = window.offer(json.loads(row[0]) if row else None, entry, spec, now)
            _save_window(conn, rule_id, group_key, state, spec, existed=row is not None)
        return result

    # -- suppression -------------------------------------------------------------------------------
    def suppress_try(self, rule_id: str, group_key: str, until: float, now: float, token: str) -> bool:
        with self._tx() as conn:
            row = conn.execute("SELECT until, token FROM state_suppress WHERE rule_id = ? AND group_key = ?",
                               (rule_id, group_key)).fetchone()
            if row is not None and row[0] > now:
                return row[1] == token
            conn.execute("INSERT OR REPLACE INTO state_suppress VALUES (?, ?, ?, ?)", (rule_id, group_key, until, token))
        return True

    # -- digests -----------------------------------------------------------------------------------
    def digest_add(self, rule_id: str, period_start: float, period_end: float, due_at: float,
                   jti: str, time: float, item: dict[str, Any], max_items: int) -> bool:
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM state_digest_items WHERE rule_id = ? AND period_start = ? AND jti = ?",
                            (rule_id, period_start, jti)).fetchone():
                return False
            conn.execute("INSERT OR IGNORE INTO state_digest_periods (rule_id, period_start, period_end, due_at) "
                         "VALUES (?, ?, ?, ?)", (rule_id, period_start, period_end, due_at))
            kept = conn.execute("SELECT kept FROM state_digest_periods WHERE rule_id = ? AND period_start = ?",
                                (rule_id, period_start)).fetchone()[0]
            keep = kept < max_items
            if keep:
                conn.execute("INSERT INTO state_digest_items VALUES (?, ?, ?, ?, ?)",
                             (rule_id, period_start, jti, time, json.dumps(item)))
            conn.execute("UPDATE state_digest_periods SET total = total + 1, kept = kept + ? "
                         "WHERE rule_id = ? AND period_start = ?", (int(keep), rule_id, period_start))
        return True

    def digest_due(self, rule_id: str, now: float) -> list[DigestBatch]:
        periods = self._read("SELECT period_start, period_end, total FROM state_digest_periods "
                             "WHERE rule_id = ? AND due_at <= ? ORDER BY period_start", (rule_id, now))
        return [DigestBatch(start, end, [json.loads(r[0]) for r in self._read(
                    "SELECT item FROM state_digest_items WHERE rule_id = ? AND period_start = ? ORDER BY time, jti",
                    (rule_id, start))], total) for start, end, total in periods]

    def digest_done(self, rule_id: str, period_start: float) -> None:
        with self._tx() as conn:
            for table in ("state_digest_periods", "state_digest_items"):
                conn.execute(f"DELETE FROM {table} WHERE rule_id = ? AND period_start = ?", (rule_id, period_start))

    # -- size --------------------------------------------------------------------------------------
    def prune_state(self, now: float) -> int:
        with self._tx() as conn:
            removed = conn.execute("DELETE FROM state_windows WHERE expires_at < ?", (now,)).rowcount
            if removed:
                conn.execute("DELETE FROM state_groups")
                conn.execute("INSERT INTO state_groups SELECT rule_id, COUNT(*) FROM state_windows GROUP BY rule_id")
            removed += conn.execute("DELETE FROM state_suppress WHERE until <= ?", (now,)).rowcount
        return removed + self.prune_detections(now)

    def state_size(self) -> int:
        return sum(self._read(f"SELECT COUNT(*) FROM {table}")[0][0] for table in _TABLES + DETECTION_TABLES)


def _has_room(conn: sqlite3.Connection, rule_id: str, cap: int, now: float) -> bool:
    """Whether the rule may hold one more group; expired groups of the rule are pruned first when full."""
    row = conn.execute("SELECT groups FROM state_groups WHERE rule_id = ?", (rule_id,)).fetchone()
    if row is None or row[0] < cap:
        return True
    removed = conn.execute("DELETE FROM state_windows WHERE rule_id = ? AND expires_at < ?", (rule_id, now)).rowcount
    conn.execute("UPDATE state_groups SET groups = groups - ? WHERE rule_id = ?", (removed, rule_id))
    return row[0] - removed < cap


def _save_window(conn: sqlite3.Connection, rule_id: str, group_key: str, state: window.State | None,
                 spec: Threshold, existed: bool) -> None:
    if state is None:
        if existed:
            conn.execute("DELETE FROM state_windows WHERE rule_id = ? AND group_key = ?", (rule_id, group_key))
            conn.execute("UPDATE state_groups SET groups = groups - 1 WHERE rule_id = ?", (rule_id,))
        return
    conn.execute("INSERT OR REPLACE INTO state_windows VALUES (?, ?, ?, ?)",
                 (rule_id, group_key, json.dumps(state), window.expires_at(state, spec)))
    if not existed:
        conn.execute("INSERT INTO state_groups VALUES (?, 1) ON CONFLICT(rule_id) DO UPDATE SET groups = groups + 1",
                     (rule_id,))
