"""What `idhooks migrate` reads from one backend and writes into another (engine/store/migration.py). Each
backend implements both sides in its `*_transfer.py` mixin, so any backend can be copied into any other.

Exports page through the source (a big store never sits in memory); imports keep what the target already holds
(same jti, job key, window, suppression or digest item) and say whether they copied anything, so copying is
idempotent. Window states are the JSON documents of engine/match/stateful/window.py, the same on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Protocol

from engine.store.base import Job, StoredEvent

PAGE = 1000
"""Rows or keys read per round trip while exporting."""


@dataclass(frozen=True)
class WindowRecord:
    rule_id: str
    group_key: str
    state: str  # JSON
    expires_at: float


@dataclass(frozen=True)
class SuppressionRecord:
    rule_id: str
    group_key: str
    until: float
    token: str


@dataclass(frozen=True)
class DigestPeriod:
    rule_id: str
    period_start: float
    period_end: float
    due_at: float
    total: int
    items: list[tuple[str, float, dict[str, Any]]]  # (jti, time, item), oldest first


@dataclass(frozen=True)
class SequenceRecord:
    rule_id: str
    group_key: str
    state: str  # JSON (engine/store/sequence.py)
    expires_at: float


@dataclass(frozen=True)
class NewValueRecord:
    rule_id: str
    group_key: str
    since: float
    last: float
    new_jti: str
    expires_at: float
    values: list[tuple[str, float]]  # (value, until)


@dataclass(frozen=True)
class CaptureRecord:
    """What an `http` action's `capture:` kept under one key (NewJob.capture_ref), and the time of that key's
    newest event (captures are pruned with it)."""

    ref: str
    values: dict[str, Any]
    last_event_at: float


@dataclass(frozen=True)
class TimerRecord:
    rule_id: str
    group_key: str
    due_at: float
    started: float
    payload: dict[str, Any]


class Transferable(Protocol):
    """What a Store needs besides the Store interface for `idhooks migrate` to copy from and into it."""

    def export_events(self, since: float) -> Iterator[StoredEvent]:
        """Events received at or after `since`, and every pending one, oldest first."""

    def export_jobs(self) -> Iterator[tuple[Job, float | None]]:
        """Every job with its done_at, oldest first."""

    def export_windows(self, now: float) -> Iterator[WindowRecord]:
        """Threshold windows not expired at `now`."""

    def export_suppressions(self, now: float) -> Iterator[SuppressionRecord]:
        """Suppressions still active at `now`."""

    def export_digests(self) -> Iterator[DigestPeriod]:
        """Digest periods not sent yet."""

    def export_sequences(self, now: float) -> Iterator[SequenceRecord]:
        """Sequences under way at `now`."""

    def export_new_values(self, now: float) -> Iterator[NewValueRecord]:
        """new_value groups with a value within their lookback at `now`, with their values."""

    def export_timers(self) -> Iterator[TimerRecord]:
        """Running absence timers (a claim in progress is not copied: the target hands them out anew)."""

    def export_captures(self) -> Iterator[CaptureRecord]:
        """Every key's captured values (keys with none are left out)."""

    def import_capture(self, record: CaptureRecord) -> bool:
        """Copy a key's captured values; False when this deployment holds values for that key already."""

    def import_sequence(self, record: SequenceRecord) -> bool:
        """Copy a group's sequence; False when this deployment has one for that group already."""

    def import_new_value(self, record: NewValueRecord) -> bool:
        """Copy a new_value group with its values; False when this deployment has that group already."""

    def import_timer(self, record: TimerRecord) -> bool:
        """Copy a running absence timer; False when this deployment runs one for that group already."""

    def import_event(self, event: StoredEvent) -> bool:
        """Copy a stored event as it is (status, decisions); False when this deployment already has it."""

    def import_job(self, job: Job, done_at: float | None = None) -> bool:
        """Copy a job with its status and attempts, unleased; False when its key already has a job here."""

    def import_window(self, rule_id: str, group_key: str, state: str, expires_at: float) -> bool:
        """Copy a group's window; False when this deployment has one for that group already."""

    def import_suppression(self, rule_id: str, group_key: str, until: float, token: str) -> bool:
        """Copy an active suppression; False when this deployment has one for that group already."""

    def import_digest_total(self, rule_id: str, period_start: float, total: int) -> None:
        """Set a copied digest period's match count (digest_add() counts only the items it was given)."""
