"""The state contract of stateful rules (thresholds, suppression, digests): the operations every store
backend implements and the values that cross that boundary. Declared here, in the store layer, so the
store never imports the rules engine; engine/match/stateful builds on these types.

Every value is JSON-able and every time is a float of epoch seconds passed in by the caller, so tests
drive time with an injected clock. Each operation is atomic in its backend: two processes sharing a store
never lose a count, never both pass a suppression and never both own one window's firing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_LATE = 60.0
"""How late (arrival minus event time) an event may be and still count; the hub retries within ~20 s."""
DEFAULT_MAX_GROUPS = 100_000

COUNTED = "counted"
DUPLICATE = "duplicate"    # this jti is already in the window
LATE = "late"              # older than the late allowance: no window may change any more
CONSUMED = "consumed"      # at or before the end of a window that already fired
CAPPED = "capped"          # a new group, but the rule already holds max_groups groups
REPLAYED = "replayed"      # the event that fired the window, evaluated again (after a crash): same firing


@dataclass(frozen=True)
class Threshold:
    """Fire when `count` events (or distinct values of `distinct`) of one group fall within `within` s.
    Parsed from a rule's `threshold:` key by engine/match/stateful/specs.py."""

    count: int
    within: float
    group_by: tuple[str, ...] = ()
    distinct: str | None = None
    late: float = DEFAULT_LATE
    max_groups: int = DEFAULT_MAX_GROUPS


@dataclass(frozen=True)
class WindowEntry:
    """One matching event offered to a threshold window."""

    jti: str
    time: float                     # event time (iat) in seconds
    distinct: str | None = None     # the distinct value, for `threshold.distinct`
    item: dict[str, Any] | None = None  # what templates see in `events` when the window fires


@dataclass(frozen=True)
class WindowResult:
    """The window of one group after an event was offered. `fired` is True exactly once per window
    (and again for a REPLAYED trigger, with the same first_seen, so the firing id is stable)."""

    status: str
    count: int = 0
    fired: bool = False
    first_seen: float | None = None
    last_seen: float | None = None
    items: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DigestBatch:
    """One period of a digest that is due: items in event-time order, `total` counts every match,
    including those beyond max_items."""

    period_start: float
    period_end: float
    items: list[dict[str, Any]]
    total: int


class StateStore(ABC):
    """The state operations; engine.store.base.Store inherits them, implemented by engine/store/state_sqlite.py
    and engine/store/state_redis.py (mixins) and checked by tests/test_stateful_state.py for every backend."""

    @abstractmethod
    def window_add(self, rule_id: str, group_key: str, entry: WindowEntry, spec: Threshold,
                   now: float) -> WindowResult:
        """Offer `entry` to the window of (rule, group) and return the window after it, atomically.
        A new group when the rule already has `spec.max_groups` groups is CAPPED (nothing stored) after
        expired groups of the rule were pruned."""

    @abstractmethod
    def suppress_try(self, rule_id: str, group_key: str, until: float, now: float, token: str) -> bool:
        """Atomic test-and-set: True (and suppressed until `until`) when no suppression of the group is
        active at `now`, or when the active one was set by the same `token` (a firing evaluated again)."""

    @abstractmethod
    def digest_add(self, rule_id: str, period_start: float, period_end: float, due_at: float,
                   jti: str, time: float, item: dict[str, Any], max_items: int) -> bool:
        """Add a match to a digest period; False when this jti is already in it."""

    @abstractmethod
    def digest_due(self, rule_id: str, now: float) -> list[DigestBatch]:
        """Periods of the rule whose due_at <= now, oldest first. They stay until digest_done(), so a
        crash between reading and enqueueing re-sends the same period (its job key makes it a no-op)."""

    @abstractmethod
    def digest_done(self, rule_id: str, period_start: float) -> None:
        """Forget a period whose firing was enqueued."""

    @abstractmethod
    def prune_state(self, now: float) -> int:
        """Delete expired windows and suppressions; how many were removed."""

    @abstractmethod
    def state_size(self) -> int:
        """Rows (SQLite) or keys (Redis) held for stateful rules, to show that pruning shrinks it."""
