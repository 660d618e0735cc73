"""Stateful-rule state in PostgreSQL: a mixin for PostgresStore (which provides `_tx()` and `_rows()`).

Every update is one transaction, atomic across processes:

- a threshold window: an advisory lock on (rule, group) serialises the read-compute-write of that group
  (also while its row does not exist yet), then the row is written with an upsert. `state_groups` counts a
  rule's groups for the `max_groups` cap; its row is locked only when the count changes.
- a suppression: one upsert that replaces only an expired row, then a read of the holder's token.
- a digest item: the period's row is locked, then the item is added while under `max_items`.

Lock order is always advisory lock -> window row -> the rule's `state_groups` row, and whoever holds a
`state_groups` row deletes expired windows with SKIP LOCKED, so no two updates can wait on each other in a
cycle. Times are the callers' `now`, as on the other backends.
"""

from __future__ import annotations

import json
from typing import Any

from engine.store import window
from engine.store.state import CAPPED, DigestBatch, Threshold, WindowEntry, WindowResult
from engine.store.postgres_schema import STATE_TABLES

_EXPIRED_WINDOWS = ("DELETE FROM state_windows WHERE (rule_id, group_key) IN (SELECT rule_id, group_key "
                    "FROM state_windows WHERE rule_id = %s AND expires_at < %s FOR UPDATE SKIP LOCKED)")


class PostgresStateMixin:
    """engine.store.state.StateStore for PostgresStore."""

    _tx: Any
    _rows: Any
    prune_detections: Any

    # -- threshold windows -------------------------------------------------------------------------
    def window_add(self, rule_id: str, group_key: str, entry: WindowEntry, spec: Threshold,
                   now: float) -> WindowResult:
        with self._tx("updating a threshold window") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"w\n{rule_id}\n{group_key}",))
            cur.execute("SELECT state FROM state_windows WHERE rule_id = %s AND group_key = %s FOR UPDATE",
                        (rule_id, group_key))
            row = cur.fetchone()
            if row is None and not _has_room(cur, rule_id, spec.max_groups, now):
                return WindowResult(CAPPED)
            state, result = window.offer(json.loads(row["state"]) if row else None, entry, spec, now)
            if state is None:
                if row is not None:
                    cur.execute("DELETE FROM state_windows WHERE rule_id = %s AND group_key = %s", (rule_id, group_key))
                    cur.execute("UPDATE state_groups SET groups = groups - 1 WHERE rule_id = %s", (rule_id,))
                return result
            cur.execute("INSERT INTO state_windows VALUES (%s, %s, %s, %s) ON CONFLICT (rule_id, group_key) "
                        "DO UPDATE SET state = EXCLUDED.state, expires_at = EXCLUDED.expires_at",
                        (rule_id, group_key, json.dumps(state), window.expires_at(state, spec)))
            if row is None:
                cur.execute("UPDATE state_groups SET groups = groups + 1 WHERE rule_id = %s", (rule_id,))
        return result

    # -- suppression -------------------------------------------------------------------------------
    def suppress_try(self, rule_id: str, group_key: str, until: float, now: float, token: str) -> bool:
        with self._tx("checking a suppression") as cur:
            cur.execute("INSERT INTO state_suppress VALUES (%s, %s, %s, %s) ON CONFLICT (rule_id, group_key) "
                        "DO UPDATE SET until = EXCLUDED.until, token = EXCLUDED.token "
                        "WHERE state_suppress.until <= %s RETURNING 1", (rule_id, group_key, until, token, now))
            if cur.fetchone() is not None:
                return True
            cur.execute("SELECT token FROM state_suppress WHERE rule_id = %s AND group_key = %s",
                        (rule_id, group_key))
            return cur.fetchone()["token"] == token

    # -- digests -----------------------------------------------------------------------------------
    def digest_add(self, rule_id: str, period_start: float, period_end: float, due_at: float,
                   jti: str, time: float, item: dict[str, Any], max_items: int) -> bool:
        with self._tx("adding to a digest") as cur:
            cur.execute("INSERT INTO state_digest_periods (rule_id, period_start, period_end, due_at) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", (rule_id, period_start, period_end, due_at))
            cur.execute("SELECT kept FROM state_digest_periods WHERE rule_id = %s AND period_start = %s FOR UPDATE",
                        (rule_id, period_start))
            kept = cur.fetchone()["kept"]
            cur.execute("SELECT 1 FROM state_digest_items WHERE rule_id = %s AND period_start = %s AND jti = %s",
                        (rule_id, period_start, jti))
            if cur.fetchone() is not None:
                return False
            keep = kept < max_items
            if keep:
                cur.execute("INSERT INTO state_digest_items VALUES (%s, %s, %s, %s, %s)",
                            (rule_id, period_start, jti, time, json.dumps(item)))
            cur.execute("UPDATE state_digest_periods SET total = total + 1, kept = kept + %s "
                        "WHERE rule_id = %s AND period_start = %s", (int(keep), rule_id, period_start))
        return True

    def digest_due(self, rule_id: str, now: float) -> list[DigestBatch]:
        periods = self._rows("reading due digests", "SELECT period_start, period_end, total FROM state_digest_periods "
                                                    "WHERE rule_id = %s AND due_at <= %s ORDER BY period_start",
                             (rule_id, now))
        return [DigestBatch(p["period_start"], p["period_end"], [json.loads(r["item"]) for r in self._rows(
                    "reading a digest", "SELECT item FROM state_digest_items WHERE rule_id = %s AND period_start = %s "
                                        "ORDER BY time, jti", (rule_id, p["period_start"]))], p["total"])
                for p in periods]

    def digest_done(self, rule_id: str, period_start: float) -> None:
        with self._tx("forgetting a sent digest") as cur:
            for table in ("state_digest_periods", "state_digest_items"):
                cur.execute(f"DELETE FROM {table} WHERE rule_id = %s AND period_start = %s", (rule_id, period_start))

    # -- size --------------------------------------------------------------------------------------
    def prune_state(self, now: float) -> int:
        """Expired windows (rule by rule, each under its `state_groups` row lock) and suppressions."""
        removed = 0
        for rule in self._rows("listing rules with windows", "SELECT rule_id FROM state_groups"):
            with self._tx("pruning threshold windows") as cur:
                cur.execute("SELECT groups FROM state_groups WHERE rule_id = %s FOR UPDATE", (rule["rule_id"],))
                cur.execute(_EXPIRED_WINDOWS, (rule["rule_id"], now))
                gone = cur.rowcount
                cur.execute("UPDATE state_groups SET groups = groups - %s WHERE rule_id = %s",
                            (gone, rule["rule_id"]))
                cur.execute("DELETE FROM state_groups WHERE rule_id = %s AND groups = 0", (rule["rule_id"],))
                removed += gone
        with self._tx("pruning suppressions") as cur:
            cur.execute("DELETE FROM state_suppress WHERE until <= %s", (now,))
            removed += cur.rowcount
        return removed + self.prune_detections(now)

    def state_size(self) -> int:
        rows = self._rows("measuring stateful-rule state",
                          " UNION ALL ".join(f"SELECT count(*) AS n FROM {table}" for table in STATE_TABLES))
        return sum(r["n"] for r in rows)


def _has_room(cur: Any, rule_id: str, cap: int, now: float) -> bool:
    """Whether the rule may hold one more group (its `state_groups` row locked from here to commit); expired
    groups of the rule are pruned first when full."""
    cur.execute("INSERT INTO state_groups VALUES (%s, 0) ON CONFLICT (rule_id) DO UPDATE SET groups = "
                "state_groups.groups RETURNING groups", (rule_id,))
    groups = cur.fetchone()["groups"]
    if groups < cap:
        return True
    cur.execute(_EXPIRED_WINDOWS, (rule_id, now))
    removed = cur.rowcount
    cur.execute("UPDATE state_groups SET groups = groups - %s WHERE rule_id = %s", (removed, rule_id))
    return groups - removed < cap
