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


# -- sequence, new_value and absence ---------------------------------------------------------------------
STARTED = "started"        # a sequence began, or an absence timer was started
ADVANCED = "advanced"      # the event counted for the sequence's current step (or an earlier one)
IGNORED = "ignored"        # the event matched no step the sequence is waiting for
RESET = "reset"            # a reset_on event dropped the group's sequence
COMPLETED = "completed"    # the last step completed: the rule fires
NEW = "new"                # new_value: a value not seen within the lookback (the rule fires)
KNOWN = "known"            # new_value: seen within the lookback
LEARNING = "learning"      # new_value: new, but the group is younger than learn_for
RUNNING = "running"        # absence: a timer for this group is already running (not restarted)


@dataclass(frozen=True)
class SequenceResult:
    """A group's sequence after an event. `steps` (per step: count, first, last, items) and `started`
    are set when `status` is COMPLETED or REPLAYED."""

    status: str
    step: int = 0
    started: float | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NewValueResult:
    """The verdict on one value of a group; `group_since` is when the group was first seen (its age decides
    learning), `evicted` how many old values made room (max_values)."""

    status: str
    group_since: float = 0.0
    evicted: int = 0


@dataclass(frozen=True)
class Timer:
    """A due absence timer handed to one process by timers_claim()."""

    rule_id: str
    group_key: str
    due_at: float
    started: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class SequenceEvent:
    """One event offered to a group's sequence (engine/store/sequence.py)."""

    jti: str
    time: float
    matches: tuple[int, ...]                # indexes of the steps this event matches
    reset: bool = False                     # it matches reset_on
    item: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SequenceLimits:
    """A sequence rule's shape as the state needs it."""

    counts: tuple[int, ...]                 # each step's count
    within: float
    max_groups: int = 10**9                 # groups (with a sequence under way) the rule may hold


@dataclass(frozen=True)
class NewValueLimits:
    """A new_value rule's settings as the state needs them (engine/match/stateful/memorykeys.py)."""

    lookback: float
    learn_for: float = 0.0
    max_values: int = 1000
    max_groups: int = 100_000


class DetectionStateStore(ABC):
    """The state of `sequence`, `new_value` and `absence` rules: a small contract every backend implements
    (engine/store/detections_sqlite.py, engine/store/detections_redis.py; engine.store.base.Store inherits
    it) and tests/test_state_contract.py checks on each. Every operation is atomic across processes sharing
    the store."""

    @abstractmethod
    def sequence_offer(self, rule_id: str, group_key: str, event: SequenceEvent, spec: SequenceLimits,
                       now: float) -> SequenceResult:
        """Offer an event (engine/store/sequence.py: SequenceEvent) to the group's sequence and
        store the result, atomically. A new group when the rule holds spec.max_groups is CAPPED."""

    @abstractmethod
    def new_value_seen(self, rule_id: str, group_key: str, value: str, jti: str, time: float,
                       spec: NewValueLimits, now: float) -> NewValueResult:
        """Record `value` for the group at event time `time` and say whether it is NEW (not seen within
        spec.lookback and the group older than spec.learn_for), KNOWN, LEARNING or CAPPED (a new group
        beyond spec.max_groups: nothing stored). The same jti offered again right after its NEW verdict is
        REPLAYED (a crash between the verdict and the jobs). A group keeps at most spec.max_values values:
        the ones seen longest ago make room."""

    @abstractmethod
    def timer_start(self, rule_id: str, group_key: str, due_at: float, started: float,
                    payload: dict[str, Any], max_timers: int) -> str:
        """Start the group's timer: STARTED, RUNNING (one is running: unchanged) or CAPPED (the rule holds
        max_timers timers: nothing stored)."""

    @abstractmethod
    def timer_cancel(self, rule_id: str, group_key: str) -> bool:
        """Stop the group's timer (its expected event arrived); False when none was running."""

    @abstractmethod
    def timers_claim(self, now: float, lease: float, limit: int) -> list[Timer]:
        """Hand out due timers (due_at <= now) to this caller alone for `lease` seconds: a timer whose
        claimer dies becomes due again after the lease. Oldest first."""

    @abstractmethod
    def timers_done(self, timers: list[Timer]) -> None:
        """Forget claimed timers after their firings were enqueued (a timer restarted meanwhile stays)."""

    @abstractmethod
    def prune_detections(self, now: float) -> int:
        """Delete timed-out sequences and new_value groups with nothing within their lookback (prune_state
        calls it); how many were removed."""
