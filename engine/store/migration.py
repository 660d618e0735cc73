"""Copy one deployment's state from one store into another (`idhooks migrate`), between any two of SQLite, Redis
and PostgreSQL: for moving a single process to a scaled-out deployment, or between shared backends, without
losing events in flight, de-duplication, dead letters or rule state.

What is copied: events received within the retention period (and every pending one, whatever its age),
which are also the de-duplication state (a jti still stored is a duplicate on every backend); every job
(pending, failed, dead and the done ones not yet pruned) with its status and attempts; the subscription
records; the quarantine; and the stateful-rule state (open threshold windows, active suppressions, unsent
digests, sequences under way, new_value groups with their known values, running absence timers), and the values
`capture:` kept from earlier answers, which later jobs of the same key send. Leases are not
copied: run it with every idhooks process of both stores stopped. Copying is
idempotent: what the target already holds (same jti, job key, quarantine id, window, suppression or digest
item) is left as it is and counted as skipped. Each backend's reading and writing side is its `*_transfer.py`
mixin (engine/store/transfer.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.store.base import Store
from engine.store.transfer import Transferable

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
        kind: Copied() for kind in ("events", "jobs", "subscriptions", "quarantine entries", "rule state",
                                    "captured values")})


def migrate(source: Store, target: Store, *, now: float, retention: float) -> MigrationReport:
    """Every backend's store is also Transferable (its `*_transfer.py` mixin)."""
    return _migrate(source, target, now, retention)  # type: ignore[arg-type]


def _migrate(source: Any, target: Any, now: float, retention: float) -> MigrationReport:
    report = MigrationReport()
    k = report.kinds
    for event in source.export_events(now - retention):
        k["events"].count(target.import_event(event))
    for job, done_at in source.export_jobs():
        k["jobs"].count(target.import_job(job, done_at=done_at))
    _copy_subscriptions(source, target, k["subscriptions"])
    _copy_quarantine(source, target, k["quarantine entries"])
    _copy_rule_state(source, target, now, k["rule state"])
    for capture in source.export_captures():
        k["captured values"].count(target.import_capture(capture))
    return report


def _copy_subscriptions(source: Store, target: Store, tally: Copied) -> None:
    newest = {(r.webhook, r.topic, r.mode): r.at for r in target.list_subscriptions()}
    for record in source.list_subscriptions():
        newer = newest.get((record.webhook, record.topic, record.mode), float("-inf")) < record.at
        if newer:
            target.record_subscription(record)
        tally.count(newer)


def _copy_rule_state(source: Transferable, target: Transferable | Store, now: float, tally: Copied) -> None:
    """Open threshold windows, active suppressions, unsent digest periods, sequences, new_value groups and absence
    timers (each counted once)."""
    for w in source.export_windows(now):
        tally.count(target.import_window(w.rule_id, w.group_key, w.state, w.expires_at))
    for s in source.export_suppressions(now):
        tally.count(target.import_suppression(s.rule_id, s.group_key, s.until, s.token))
    for period in source.export_digests():
        added = [target.digest_add(period.rule_id, period.period_start, period.period_end, period.due_at, jti, time,
                                   item, _NO_CAP) for jti, time, item in period.items]
        if any(added):
            target.import_digest_total(period.rule_id, period.period_start, period.total)
        tally.count(any(added))
    for sequence in source.export_sequences(now):
        tally.count(target.import_sequence(sequence))
    for group in source.export_new_values(now):
        tally.count(target.import_new_value(group))
    for timer in source.export_timers():
        tally.count(target.import_timer(timer))


def _copy_quarantine(source: Store, target: Store, tally: Copied) -> None:
    present = {entry.id for entry in target.quarantine_list()}
    for entry in source.quarantine_list():
        if entry.id not in present:
            target.quarantine_add(entry, max_entries=_NO_CAP, max_bytes=_NO_CAP)
        tally.count(entry.id not in present)
