"""Copy one deployment's state from the SQLite store into Redis (`idhooks migrate`), for moving a single
process to a scaled-out deployment without losing events in flight, de-duplication or dead letters.

What is copied: events received within the retention period (and every pending one, whatever its age),
which are also the de-duplication state (a jti still stored is a duplicate on either backend); every job
(pending, failed, dead and the done ones not yet pruned) with its status and attempts; the subscription
records; the quarantine; and the stateful-rule state (open threshold windows, active suppressions, unsent
digests, sequences under way, new_value groups and their values, running absence timers). Leases are not copied: run it with every idhooks process of both stores stopped. Copying is
idempotent: what the target already holds (same jti, job key, quarantine id, window, suppression or digest
item) is left as it is and counted as skipped.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Iterator

from engine.store.base import Store
from engine.store.redis import RedisStore
from engine.store.sqlite import SQLiteStore, _event_row, _job_row
from engine.store.state import STARTED

_PAGE = 1000
_NO_CAP = 2**53


@dataclass
class Copied:
    copied: int = 0
    skipped: int = 0

    def count(self, copied: bool) -> None:
        if copied:
            self.copied += 1
        else:
            self.skipped += 1


@dataclass
class MigrationReport:
    kinds: dict[str, Copied] = field(default_factory=lambda: {
        kind: Copied() for kind in ("events", "jobs", "subscriptions", "quarantine entries", "rule state")})


def _pages(source: SQLiteStore, sql: str, args: tuple) -> Iterator[sqlite3.Row]:
    """Rows of `sql` (which must end in ORDER BY ...) a page at a time, so a big store never sits in memory."""
    offset = 0
    while rows := source._read(f"{sql} LIMIT ? OFFSET ?", (*args, _PAGE, offset)):
        yield from rows
        offset += len(rows)


def migrate(source: SQLiteStore, target: RedisStore, *, now: float, retention: float) -> MigrationReport:
    report = MigrationReport()
    k = report.kinds
    for row in _pages(source, "SELECT * FROM events WHERE received_at >= ? OR status = 'pending' "
                              "ORDER BY received_at, jti", (now - retention,)):
        k["events"].count(target.import_event(_event_row(row)))
    for row in _pages(source, "SELECT * FROM jobs ORDER BY created_at, id", ()):
        k["jobs"].count(target.import_job(_job_row(row), done_at=row["done_at"]))
    _copy_subscriptions(source, target, k["subscriptions"])
    _copy_quarantine(source, target, k["quarantine entries"])
    _copy_rule_state(source, target, now, k["rule state"])
    _copy_detection_state(source, target, now, k["rule state"])
    return report


def _copy_subscriptions(source: Store, target: Store, tally: Copied) -> None:
    newest = {(r.webhook, r.topic, r.mode): r.at for r in target.list_subscriptions()}
    for record in source.list_subscriptions():
        newer = newest.get((record.webhook, record.topic, record.mode), float("-inf")) < record.at
        if newer:
            target.record_subscription(record)
        tally.count(newer)


def _copy_rule_state(source: SQLiteStore, target: RedisStore, now: float, tally: Copied) -> None:
    """Open threshold windows, active suppressions and unsent digest periods (each counted once)."""
    for row in _pages(source, "SELECT * FROM state_windows WHERE expires_at > ? ORDER BY rule_id, group_key", (now,)):
        tally.count(target.import_window(row["rule_id"], row["group_key"], row["state"], row["expires_at"]))
    for row in _pages(source, "SELECT * FROM state_suppress WHERE until > ? ORDER BY rule_id, group_key", (now,)):
        tally.count(target.import_suppression(row["rule_id"], row["group_key"], row["until"], row["token"]))
    for period in _pages(source, "SELECT * FROM state_digest_periods ORDER BY rule_id, period_start", ()):
        rule, start = period["rule_id"], period["period_start"]
        added = [target.digest_add(rule, start, period["period_end"], period["due_at"], item["jti"], item["time"],
                                   json.loads(item["item"]), _NO_CAP)
                 for item in _pages(source, "SELECT * FROM state_digest_items WHERE rule_id = ? AND period_start = ? "
                                            "ORDER BY time, jti", (rule, start))]
        if any(added):
            target.import_digest_total(rule, start, period["total"])
        tally.count(any(added))


def _copy_detection_state(source: SQLiteStore, target: RedisStore, now: float, tally: Copied) -> None:
    """Sequences under way, new_value groups with their values, and running absence timers."""
    for row in _pages(source, "SELECT * FROM state_sequences WHERE expires_at > ? ORDER BY rule_id, group_key",
                      (now,)):
        tally.count(target.import_sequence(row["rule_id"], row["group_key"], row["state"], row["expires_at"]))
    for group in _pages(source, "SELECT * FROM state_nv_groups WHERE expires_at > ? ORDER BY id", (now,)):
        values = {row["value"]: row["until"] for row in
                  _pages(source, "SELECT value, until FROM state_nv_values WHERE gid = ? ORDER BY value", (group["id"],))}
        tally.count(target.import_new_value_group(group["rule_id"], group["group_key"], group["since"], group["last"],
                                                  group["expires_at"], group["new_jti"], values))
    for row in _pages(source, "SELECT * FROM state_timers ORDER BY rule_id, group_key", ()):
        started = target.timer_start(row["rule_id"], row["group_key"], row["due_at"], row["started"],
                                     json.loads(row["payload"]), _NO_CAP)
        tally.count(started == STARTED)


def _copy_quarantine(source: Store, target: Store, tally: Copied) -> None:
    present = {entry.id for entry in target.quarantine_list()}
    for entry in source.quarantine_list():
        if entry.id not in present:
            target.quarantine_add(entry, max_entries=_NO_CAP, max_bytes=_NO_CAP)
        tally.count(entry.id not in present)
