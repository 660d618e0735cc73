"""`idhooks migrate` for PostgresStore (engine/store/transfer.py): a mixin using its `_rows()` and `_tx()`.
Exports page by key (not OFFSET), so each page is one index range scan however big the table."""

from __future__ import annotations

import json
from typing import Any, Iterator

from engine.store.base import Job, StoredEvent
from engine.store.transfer import (PAGE, CaptureRecord, DigestPeriod, NewValueRecord, SequenceRecord, SuppressionRecord,
                                   TimerRecord, WindowRecord)


class PostgresTransferMixin:
    _rows: Any
    _tx: Any

    def _keyset(self, what: str, table: str, where: str, args: tuple, order: tuple[str, ...]) -> Iterator[dict]:
        """Rows of `table` matching `where`, ordered by the columns `order`, PAGE rows per query."""
        columns = ", ".join(order)
        after: tuple = ()
        while True:
            more = f"AND ({columns}) > ({', '.join(['%s'] * len(order))})" if after else ""
            rows = self._rows(what, f"SELECT * FROM {table} WHERE ({where}) {more} ORDER BY {columns} LIMIT %s",
                              (*args, *after, PAGE))
            yield from rows
            if len(rows) < PAGE:
                return
            after = tuple(rows[-1][column] for column in order)

    def export_events(self, since: float) -> Iterator[StoredEvent]:
        from engine.store.postgres import _event  # postgres.py imports this module

        for row in self._keyset("exporting events", "events", "received_at >= %s OR status = 'pending'", (since,),
                                ("received_at", "jti")):
            yield _event(row)

    def export_jobs(self) -> Iterator[tuple[Job, float | None]]:
        from engine.store.postgres import _job

        for row in self._keyset("exporting jobs", "jobs", "TRUE", (), ("created_at", "id")):
            yield _job(row), row["done_at"]

    def export_windows(self, now: float) -> Iterator[WindowRecord]:
        for row in self._keyset("exporting windows", "state_windows", "expires_at > %s", (now,),
                                ("rule_id", "group_key")):
            yield WindowRecord(row["rule_id"], row["group_key"], row["state"], row["expires_at"])

    def export_suppressions(self, now: float) -> Iterator[SuppressionRecord]:
        for row in self._keyset("exporting suppressions", "state_suppress", "until > %s", (now,),
                                ("rule_id", "group_key")):
            yield SuppressionRecord(row["rule_id"], row["group_key"], row["until"], row["token"])

    def export_digests(self) -> Iterator[DigestPeriod]:
        for p in self._keyset("exporting digests", "state_digest_periods", "TRUE", (), ("rule_id", "period_start")):
            items = [(r["jti"], r["time"], json.loads(r["item"])) for r in self._keyset(
                "exporting digest items", "state_digest_items", "rule_id = %s AND period_start = %s",
                (p["rule_id"], p["period_start"]), ("time", "jti"))]
            yield DigestPeriod(p["rule_id"], p["period_start"], p["period_end"], p["due_at"], p["total"], items)

    def export_sequences(self, now: float) -> Iterator[SequenceRecord]:
        for r in self._keyset("exporting sequences", "state_sequences", "expires_at > %s", (now,),
                              ("rule_id", "group_key")):
            yield SequenceRecord(r["rule_id"], r["group_key"], r["state"], r["expires_at"])

    def export_new_values(self, now: float) -> Iterator[NewValueRecord]:
        """Values are stored as JSON text (engine/store/detections_postgres.py): given back as they were."""
        for g in self._keyset("exporting new_value groups", "state_nv_groups", "expires_at > %s", (now,), ("id",)):
            values = [(json.loads(r["value"]), r["until"]) for r in self._keyset(
                "exporting values", "state_nv_values", "gid = %s", (g["id"],), ("value",))]
            yield NewValueRecord(g["rule_id"], g["group_key"], g["since"], g["last"], g["new_jti"], g["expires_at"],
                                 values)

    def export_timers(self) -> Iterator[TimerRecord]:
        for r in self._keyset("exporting timers", "state_timers", "TRUE", (), ("rule_id", "group_key")):
            yield TimerRecord(r["rule_id"], r["group_key"], r["due_at"], r["started"], json.loads(r["payload"]))

    def export_captures(self) -> Iterator[CaptureRecord]:
        for r in self._keyset("exporting captured values", "captures", "captured <> '{}'", (), ("ref",)):
            yield CaptureRecord(r["ref"], json.loads(r["captured"]), r["last_event_at"])

    def import_capture(self, record: CaptureRecord) -> bool:
        with self._tx("copying captured values") as cur:  # a key only noted (no values yet) takes the copied ones
            cur.execute("INSERT INTO captures (ref, captured, last_event_at) VALUES (%s, %s, %s) ON CONFLICT (ref) "
                        "DO UPDATE SET captured = EXCLUDED.captured, "
                        "last_event_at = GREATEST(captures.last_event_at, EXCLUDED.last_event_at) "
                        "WHERE captures.captured = '{}'", (record.ref, json.dumps(record.values), record.last_event_at))
            return bool(cur.rowcount)

    def import_sequence(self, record: SequenceRecord) -> bool:
        with self._tx("copying a sequence") as cur:
            cur.execute("INSERT INTO state_sequences VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (record.rule_id, record.group_key, record.state, record.expires_at))
            if not cur.rowcount:
                return False
            _count(cur, "sequence", record.rule_id)
        return True

    def import_new_value(self, record: NewValueRecord) -> bool:
        with self._tx("copying a new_value group") as cur:
            cur.execute("INSERT INTO state_nv_groups (rule_id, group_key, since, last, expires_at, new_jti) "
                        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
                        (record.rule_id, record.group_key, record.since, record.last, record.expires_at,
                         record.new_jti))
            row = cur.fetchone()
            if row is None:
                return False
            if record.values:
                cur.execute("INSERT INTO state_nv_values SELECT %s, * FROM unnest(%s::text[], %s::float8[]) "
                            "ON CONFLICT DO NOTHING", (row["id"], [json.dumps(v) for v, _ in record.values],
                                                       [until for _, until in record.values]))
            _count(cur, "new_value", record.rule_id)
        return True

    def import_timer(self, record: TimerRecord) -> bool:
        with self._tx("copying a timer") as cur:
            cur.execute("INSERT INTO state_timers VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (record.rule_id, record.group_key, record.due_at, record.due_at, record.started,
                         json.dumps(record.payload)))
            if not cur.rowcount:
                return False
            _count(cur, "absence", record.rule_id)
        return True

    def import_event(self, event: StoredEvent) -> bool:
        return bool(self._rows(
            "copying an event",
            "INSERT INTO events (jti, webhook, iat_ms, received_at, uris, body, status, decisions, processed_at) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING 1",
            (event.jti, event.webhook, event.iat_ms, event.received_at, json.dumps(list(event.uris)), event.body,
             event.status, json.dumps(event.decisions) if event.decisions is not None else None, event.processed_at)))

    def import_job(self, job: Job, done_at: float | None = None) -> bool:
        return bool(self._rows(
            "copying a job",
            "INSERT INTO jobs (id, key, destination, payload, status, attempts, created_at, due_at, last_error, "
            "last_response, done_at, window_start, order_key, order_at) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING 1",
            (job.id, job.key, job.destination, json.dumps(job.to_json()),
             "pending" if job.status == "failed" else job.status, job.attempts, job.created_at, job.due_at,
             job.last_error, job.last_response, done_at, job.window_start, job.order_key,
             job.received_at if job.received_at is not None else job.created_at)))

    def import_window(self, rule_id: str, group_key: str, state: str, expires_at: float) -> bool:
        with self._tx("copying a threshold window") as cur:
            cur.execute("INSERT INTO state_windows VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (rule_id, group_key, state, expires_at))
            if not cur.rowcount:
                return False
            cur.execute("INSERT INTO state_groups VALUES (%s, 1) ON CONFLICT (rule_id) DO UPDATE "
                        "SET groups = state_groups.groups + 1", (rule_id,))
        return True

    def import_suppression(self, rule_id: str, group_key: str, until: float, token: str) -> bool:
        return bool(self._rows("copying a suppression", "INSERT INTO state_suppress VALUES (%s, %s, %s, %s) "
                                                        "ON CONFLICT DO NOTHING RETURNING 1",
                               (rule_id, group_key, until, token)))

    def import_digest_total(self, rule_id: str, period_start: float, total: int) -> None:
        self._rows("copying a digest", "UPDATE state_digest_periods SET total = %s "
                                       "WHERE rule_id = %s AND period_start = %s", (total, rule_id, period_start))


def _count(cur: Any, kind: str, rule_id: str) -> None:
    """One more group or timer of the rule in state_counts (the caps read it)."""
    cur.execute("INSERT INTO state_counts VALUES (%s, %s, 1) ON CONFLICT (kind, rule_id) DO UPDATE "
                "SET n = state_counts.n + 1", (kind, rule_id))
