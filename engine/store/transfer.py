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
