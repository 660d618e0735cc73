"""State of `sequence`, `new_value` and `absence` rules in PostgreSQL: a mixin for PostgresStore (which provides
`_tx()` and `_rows()`), implementing engine.store.state.DetectionStateStore.

Every operation is one transaction, atomic across processes: an advisory lock on (kind, rule, group) serialises
the read-compute-write of one group's sequence or new_value state (also while its row does not exist yet), and
absence timers of a rule take an advisory lock on (absence, rule). `state_counts` holds the number of groups or
timers per rule and kind for the caps; its row is locked (an upsert) only when a count changes, and pruning deletes
rows with SKIP LOCKED, so no two transactions wait on each other in a cycle (the order is always advisory lock ->
state row -> count row).
"""

from __future__ import annotations

import json
from typing import Any

from engine.store import sequence
from engine.store.state import (CAPPED, KNOWN, LEARNING, NEW, REPLAYED, RUNNING, STARTED, NewValueLimits,
                                NewValueResult, SequenceEvent, SequenceLimits, SequenceResult, Timer)

MIGRATION = """
    CREATE TABLE state_sequences (
        rule_id text NOT NULL, group_key text NOT NULL, state text NOT NULL, expires_at double precision NOT NULL,
        PRIMARY KEY (rule_id, group_key));
    CREATE INDEX state_sequences_expiry ON state_sequences (rule_id, expires_at);
    CREATE TABLE state_counts (kind text NOT NULL, rule_id text NOT NULL, n integer NOT NULL,
        PRIMARY KEY (kind, rule_id));
    CREATE TABLE state_nv_groups (
        id bigserial PRIMARY KEY, rule_id text NOT NULL, group_key text NOT NULL, since double precision NOT NULL,
        last double precision NOT NULL, expires_at double precision NOT NULL, new_jti text NOT NULL DEFAULT '',
        UNIQUE (rule_id, group_key));
    CREATE INDEX state_nv_groups_expiry ON state_nv_groups (rule_id, expires_at);
    CREATE TABLE state_nv_values (
        gid bigint NOT NULL REFERENCES state_nv_groups (id) ON DELETE CASCADE, value text NOT NULL,
        until double precision NOT NULL, PRIMARY KEY (gid, value));
    CREATE INDEX state_nv_values_until ON state_nv_values (gid, until);
    CREATE TABLE state_timers (
        rule_id text NOT NULL, group_key text NOT NULL, due_at double precision NOT NULL,
        fire_at double precision NOT NULL, started double precision NOT NULL, payload text NOT NULL,
        PRIMARY KEY (rule_id, group_key));
    CREATE INDEX state_timers_fire ON state_timers (fire_at);
"""

TABLES = ("state_sequences", "state_counts", "state_nv_groups", "state_nv_values", "state_timers")

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def _add(cur: Any, kind: str, rule_id: str, delta: int) -> int:
    """Change a rule's count (locking its row until commit); the new count."""
    cur.execute("INSERT INTO state_counts VALUES (%s, %s, GREATEST(%s, 0)) ON CONFLICT (kind, rule_id) "
                "DO UPDATE SET n = GREATEST(state_counts.n + %s, 0) RETURNING n", (kind, rule_id, delta, delta))
    return cur.fetchone()["n"]


class PostgresDetectionMixin:
    """DetectionStateStore for PostgresStore."""

    _tx: Any
    _rows: Any

    # -- sequences ---------------------------------------------------------------------------------
    def sequence_offer(self, rule_id: str, group_key: str, event: SequenceEvent,
                       spec: SequenceLimits, now: float) -> SequenceResult:
        with self._tx("updating a sequence") as cur:
            cur.execute(_LOCK, (f"seq\n{rule_id}\n{group_key}",))
            cur.execute("SELECT state FROM state_sequences WHERE rule_id = %s AND group_key = %s FOR UPDATE",
                        (rule_id, group_key))
            row = cur.fetchone()
            if row is None and _add(cur, "sequence", rule_id, 0) >= spec.max_groups:
                cur.execute("DELETE FROM state_sequences WHERE (rule_id, group_key) IN (SELECT rule_id, group_key "
                            "FROM state_sequences WHERE rule_id = %s AND expires_at < %s FOR UPDATE SKIP LOCKED)",
                            (rule_id, now))
                if _add(cur, "sequence", rule_id, -cur.rowcount) >= spec.max_groups:
                    return SequenceResult(CAPPED)
            state, result = sequence.offer(json.loads(row["state"]) if row else None, event, spec)
            if state is None:
                if row is not None:
                    cur.execute("DELETE FROM state_sequences WHERE rule_id = %s AND group_key = %s",
                                (rule_id, group_key))
                    _add(cur, "sequence", rule_id, -1)
                return result
            cur.execute("INSERT INTO state_sequences VALUES (%s, %s, %s, %s) ON CONFLICT (rule_id, group_key) "
                        "DO UPDATE SET state = EXCLUDED.state, expires_at = EXCLUDED.expires_at",
                        (rule_id, group_key, json.dumps(state), sequence.expires_at(state, spec)))
            if row is None:
                _add(cur, "sequence", rule_id, 1)
        return result

    # -- new values --------------------------------------------------------------------------------
    def new_value_seen(self, rule_id: str, group_key: str, value: str, jti: str, time: float,
                       spec: NewValueLimits, now: float) -> NewValueResult:
        with self._tx("recording a value") as cur:
            cur.execute(_LOCK, (f"nv\n{rule_id}\n{group_key}",))
            cur.execute("SELECT id, since, last, new_jti FROM state_nv_groups WHERE rule_id = %s AND group_key = %s "
                        "FOR UPDATE", (rule_id, group_key))
            group = cur.fetchone()
            if group is None:
                if _add(cur, "new_value", rule_id, 0) >= spec.max_groups:
                    cur.execute("DELETE FROM state_nv_groups WHERE id IN (SELECT id FROM state_nv_groups WHERE "
                                "rule_id = %s AND expires_at < %s LIMIT 1000 FOR UPDATE SKIP LOCKED)", (rule_id, now))
                    if _add(cur, "new_value", rule_id, -cur.rowcount) >= spec.max_groups:
                        return NewValueResult(CAPPED)
                cur.execute("INSERT INTO state_nv_groups (rule_id, group_key, since, last, expires_at) "
                            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                            (rule_id, group_key, time, time, time + spec.lookback))
                gid = cur.fetchone()["id"]
                _add(cur, "new_value", rule_id, 1)
                since, last = time, time
            else:
                gid, since, last = group["id"], group["since"], group["last"]
                if group["new_jti"] == jti:
                    return NewValueResult(REPLAYED, since)
                if last + spec.lookback < time:  # nothing of the group is within the lookback: it starts anew
                    cur.execute("DELETE FROM state_nv_values WHERE gid = %s", (gid,))
                    since = time
            # stored as JSON text: a value from an event may hold NUL, which PostgreSQL text cannot (equality is
            # all that is asked of it, and json.dumps is one-to-one)
            result = _nv_record(cur, gid, json.dumps(value), jti, time, since, spec)
            cur.execute("UPDATE state_nv_groups SET since = %s, last = %s, expires_at = %s WHERE id = %s",
                        (since, max(last, time), max(last, time) + spec.lookback, gid))
        return result

    # -- absence timers ----------------------------------------------------------------------------
    def timer_start(self, rule_id: str, group_key: str, due_at: float, started: float,
                    payload: dict[str, Any], max_timers: int) -> str:
        with self._tx("starting a timer") as cur:
            cur.execute(_LOCK, (f"absence\n{rule_id}",))
            cur.execute("SELECT 1 FROM state_timers WHERE rule_id = %s AND group_key = %s", (rule_id, group_key))
            if cur.fetchone() is not None:
                return RUNNING
            if _add(cur, "absence", rule_id, 0) >= max_timers:
                return CAPPED
            cur.execute("INSERT INTO state_timers VALUES (%s, %s, %s, %s, %s, %s)",
                        (rule_id, group_key, due_at, due_at, started, json.dumps(payload)))
            _add(cur, "absence", rule_id, 1)
        return STARTED

    def timer_cancel(self, rule_id: str, group_key: str) -> bool:
        with self._tx("cancelling a timer") as cur:
            cur.execute(_LOCK, (f"absence\n{rule_id}",))
            cur.execute("DELETE FROM state_timers WHERE rule_id = %s AND group_key = %s", (rule_id, group_key))
            removed = cur.rowcount
            if removed:
                _add(cur, "absence", rule_id, -removed)
        return bool(removed)

    def timers_claim(self, now: float, lease: float, limit: int) -> list[Timer]:
        rows = self._rows("claiming timers",
                          "UPDATE state_timers SET fire_at = %s WHERE (rule_id, group_key) IN (SELECT rule_id, "
                          "group_key FROM state_timers WHERE fire_at <= %s ORDER BY fire_at LIMIT %s FOR UPDATE "
                          "SKIP LOCKED) RETURNING rule_id, group_key, due_at, started, payload", (now + lease, now, limit))
        return sorted((Timer(r["rule_id"], r["group_key"], r["due_at"], r["started"], json.loads(r["payload"]))
                       for r in rows), key=lambda timer: (timer.due_at, timer.rule_id, timer.group_key))

    def timers_done(self, timers: list[Timer]) -> None:
        """One transaction for the batch; rules in sorted order, so two callers take their locks alike."""
        with self._tx("forgetting fired timers") as cur:
            for timer in sorted(timers, key=lambda t: (t.rule_id, t.group_key)):
                cur.execute(_LOCK, (f"absence\n{timer.rule_id}",))
                cur.execute("DELETE FROM state_timers WHERE rule_id = %s AND group_key = %s AND due_at = %s",
                            (timer.rule_id, timer.group_key, timer.due_at))
                if cur.rowcount:
                    _add(cur, "absence", timer.rule_id, -cur.rowcount)

    # -- pruning -----------------------------------------------------------------------------------
    def prune_detections(self, now: float) -> int:
        """Timed-out sequences and new_value groups with nothing within their lookback, rule by rule; rows a
        concurrent update holds are left for the next prune."""
        removed = 0
        for kind, table in (("sequence", "state_sequences"), ("new_value", "state_nv_groups")):
            for rule in self._rows("listing rules with detection state", f"SELECT DISTINCT rule_id FROM {table} "
                                                                         "WHERE expires_at < %s", (now,)):
                with self._tx("pruning detection state") as cur:
                    cur.execute(f"DELETE FROM {table} WHERE (rule_id, group_key) IN (SELECT rule_id, group_key "
                                f"FROM {table} WHERE rule_id = %s AND expires_at < %s FOR UPDATE SKIP LOCKED)",
                                (rule["rule_id"], now))
                    if cur.rowcount:
                        removed += cur.rowcount
                        _add(cur, kind, rule["rule_id"], -cur.rowcount)
                    cur.execute("DELETE FROM state_counts WHERE kind = %s AND rule_id = %s AND n = 0",
                                (kind, rule["rule_id"]))
        return removed


def _nv_record(cur: Any, gid: int, value: str, jti: str, time: float, since: float,
               spec: NewValueLimits) -> NewValueResult:
    cur.execute("SELECT until FROM state_nv_values WHERE gid = %s AND value = %s", (gid, value))
    row = cur.fetchone()
    if row is not None and row["until"] >= time:
        if time + spec.lookback > row["until"]:
            cur.execute("UPDATE state_nv_values SET until = %s WHERE gid = %s AND value = %s",
                        (time + spec.lookback, gid, value))
        return NewValueResult(KNOWN, since)
    cur.execute("INSERT INTO state_nv_values VALUES (%s, %s, %s) ON CONFLICT (gid, value) DO UPDATE "
                "SET until = EXCLUDED.until", (gid, value, time + spec.lookback))
    cur.execute("DELETE FROM state_nv_values WHERE gid = %s AND until < %s", (gid, time))
    cur.execute("SELECT count(*) AS n FROM state_nv_values WHERE gid = %s", (gid,))
    evicted = max(0, cur.fetchone()["n"] - spec.max_values)
    if evicted:
        cur.execute("DELETE FROM state_nv_values WHERE gid = %s AND value IN (SELECT value FROM state_nv_values "
                    "WHERE gid = %s AND value <> %s ORDER BY until LIMIT %s)", (gid, gid, value, evicted))
    if time - since < spec.learn_for:
        return NewValueResult(LEARNING, since, evicted)
    cur.execute("UPDATE state_nv_groups SET new_jti = %s WHERE id = %s", (jti, gid))
    return NewValueResult(NEW, since, evicted)
