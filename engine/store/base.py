"""The store interface: events, de-duplication, rule decisions, the delivery queue, subscriptions and the
quarantine. SQLite (engine/store/sqlite.py) is the embedded default; Redis (engine/store/redis.py) and
PostgreSQL (engine/store/postgres.py) the shared backends for several processes. tests/test_store_contract.py runs one contract suite against every backend.

Every payload crossing this interface is JSON-able (never pickle). Every time is a float of epoch seconds
passed in by the caller (the app's clock), so tests control time without sleeping.

Event life cycle:  ingest() -> status 'pending' -> claim_events() (leased) -> complete_event() -> 'processed'
                   (an event whose iat is older than the de-duplication window is stored as 'stale' and never
                   evaluated). A lease that expires (the process died) makes the event claimable again.
Job life cycle:    complete_event() creates jobs 'pending' -> claim_jobs() (leased) -> ack_job() 'done'
                   | retry_job() 'pending' with a later due_at | dead_job() 'dead' -> requeue_dead() 'pending'.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.match.stateful.specs import Threshold
from engine.match.stateful.state import DigestBatch, WindowEntry, WindowResult

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
STALE = "stale"

JOB_STATUSES = ("pending", "failed", "dead", "done")
"""`failed` = pending with at least one failed attempt (a retry is scheduled)."""


@dataclass(frozen=True)
class IncomingEvent:
    """A verified, parsed delivery about to be stored. `body` is the exact raw JSON bytes received."""

    jti: str
    webhook: str
    iat_ms: float
    received_at: float
    uris: tuple[str, ...]
    body: bytes


@dataclass
class StoredEvent:
    jti: str
    webhook: str
    iat_ms: float
    received_at: float
    uris: tuple[str, ...]
    body: bytes
    status: str  # pending | processed | stale
    decisions: list[dict[str, Any]] | None = None
    processed_at: float | None = None


@dataclass(frozen=True)
class NewJob:
    """A delivery to make. `key` is unique per (event, rule, action index): creating it twice is a no-op,
    so re-evaluating an event after a crash never doubles a delivery. It is also the Idempotency-Key."""

    key: str
    destination: str
    payload: dict[str, Any]


@dataclass
class Job:
    id: str
    key: str
    destination: str
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: float
    due_at: float
    last_error: str = ""
    last_response: str = ""
    lease_owner: str = ""
    window_start: float | None = None  # when the retry window began: created_at, or the last re-queue

    @property
    def retry_window_start(self) -> float:
        """The retry window counts from the job's creation, or from the last `deadletters retry`, which
        gives a re-queued dead letter a full set of attempts again."""
        return self.window_start if self.window_start is not None else self.created_at


@dataclass(frozen=True)
class SubscriptionRecord:
    webhook: str
    topic: str
    mode: str  # subscribe | unsubscribe | denied | hub-error
    at: float
    lease_expires_at: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class QuarantineEntry:
    """A refused delivery's raw bytes, kept so a fixed secret can re-verify and ingest it."""

    id: str
    webhook: str
    received_at: float
    reason: str
    headers: dict[str, str]
    body: bytes


@dataclass
class QuarantineResult:
    evicted: int = 0
    evicted_bytes: int = 0
    stored: bool = True


@dataclass
class StoreStats:
    events: dict[str, int] = field(default_factory=dict)  # by status
    jobs: dict[str, int] = field(default_factory=dict)  # by status
    quarantine_entries: int = 0
    quarantine_bytes: int = 0


class Store(ABC):
    """One deployment's durable state. Implementations are thread-safe."""

    url: str

    # -- life cycle --------------------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def check_writable(self) -> None:
        """Raise StoreError unless a write would succeed now (used by /readyz)."""

    @abstractmethod
    def schema_version(self) -> int: ...

    def degraded(self) -> str:
        """Why the store works in a reduced way right now (events spooled to local disk while a shared
        server is unreachable), or "" when it does not; /readyz shows it."""
        return ""

    def on_new_jobs(self, callback: Callable[[], None]) -> None:
        """Call `callback` when another process creates jobs, where the backend can tell (PostgreSQL's
        LISTEN/NOTIFY); elsewhere the delivery worker's poll finds them."""

    def take_over_leases(self) -> int:
        """Called once when a server starts. A backend served by one process (SQLite) releases every
        lease, so a restarted server resumes a killed one's work at once; shared backends (Redis) keep
        them, since other live processes may hold them, and rely on lease expiry."""
        return 0

    # -- events ------------------------------------------------------------------------------------
    @abstractmethod
    def ingest(self, event: IncomingEvent, dedup_window: float) -> str:
        """Store the event durably and return ACCEPTED, DUPLICATE or STALE. Returns only once the event
        is committed. A `jti` seen within `dedup_window` seconds is DUPLICATE (atomic, also when two copies
        race). An event whose iat is older than the window is stored as STALE and never evaluated.
        Raises StoreError when the store cannot commit."""

    @abstractmethod
    def get_event(self, jti: str) -> StoredEvent | None: ...

    @abstractmethod
    def list_events(self, since: float | None = None, limit: int = 100) -> list[StoredEvent]:
        """Newest first; `since` compares with received_at."""

    @abstractmethod
    def claim_events(self, owner: str, lease: float, limit: int, now: float) -> list[StoredEvent]:
        """Pending events not leased (or whose lease expired), oldest first, leased to `owner`."""

    @abstractmethod
    def complete_event(self, jti: str, decisions: list[dict[str, Any]], jobs: list[NewJob], now: float) -> None:
        """In one transaction: record the rule decisions, create the jobs (existing keys are skipped) and
        mark the event processed."""

    def complete_events(self, items: list[tuple[str, list[dict[str, Any]], list[NewJob]]], now: float) -> None:
        """complete_event() for several events; backends override it to share one transaction."""
        for jti, decisions, jobs in items:
            self.complete_event(jti, decisions, jobs, now)

    @abstractmethod
    def prune(self, now: float, retention: float, dedup_window: float) -> int:
        """Delete events older than `retention` and de-duplication keys older than the window; the
        number of events removed."""

    @abstractmethod
    def last_accepted(self) -> dict[str, float]:
        """webhook name -> received_at of its newest stored event."""

    # -- delivery queue ----------------------------------------------------------------------------
    @abstractmethod
    def claim_jobs(self, owner: str, lease: float, limit: int, now: float,
                   skip_destinations: frozenset[str] = frozenset()) -> list[Job]:
        """Due pending jobs (due_at <= now) not leased or whose lease expired, oldest due first."""

    @abstractmethod
    def ack_job(self, job_id: str, now: float) -> None:
        """The job was delivered: status 'done'."""

    @abstractmethod
    def retry_job(self, job_id: str, due_at: float, error: str, response: str = "") -> None:
        """The attempt failed but may succeed later: attempts+1, pending again at due_at."""

    @abstractmethod
    def dead_job(self, job_id: str, error: str, response: str = "") -> None:
        """No more attempts: attempts+1, status 'dead' with the last error."""

    @abstractmethod
    def get_job(self, job_id: str) -> Job | None: ...

    @abstractmethod
    def list_jobs(self, status: str | None = None, limit: int = 100) -> list[Job]:
        """Jobs by status ('pending' | 'failed' | 'dead' | 'done' | None for all), newest first."""

    @abstractmethod
    def requeue_dead(self, job_id: str | None, now: float) -> int:
        """Dead job(s) back to pending, due now (all of them when job_id is None); how many."""

    @abstractmethod
    def drop_dead(self, job_id: str) -> bool: ...

    # -- subscriptions -----------------------------------------------------------------------------
    @abstractmethod
    def record_subscription(self, record: SubscriptionRecord) -> None:
        """Keep the latest record per (webhook, topic, mode)."""

    @abstractmethod
    def list_subscriptions(self) -> list[SubscriptionRecord]: ...

    @abstractmethod
    def remove_subscription(self, webhook: str, topic: str, mode: str) -> bool:
        """Forget one record (engine/store/subscriptions.py keeps their number and age bounded)."""

    # -- quarantine --------------------------------------------------------------------------------
    @abstractmethod
    def quarantine_add(self, entry: QuarantineEntry, max_entries: int, max_bytes: int) -> QuarantineResult:
        """Keep the entry; evict the oldest while over either cap. An entry bigger than max_bytes alone
        is not stored (stored=False)."""

    @abstractmethod
    def quarantine_list(self) -> list[QuarantineEntry]:
        """Oldest first."""

    @abstractmethod
    def quarantine_remove(self, entry_id: str) -> bool: ...

    # -- numbers for metrics -----------------------------------------------------------------------
    @abstractmethod
    def stats(self) -> StoreStats: ...

    # -- stateful rules (engine/match/stateful; contract documented on engine.match.stateful.state.StateStore) ----
    @abstractmethod
    def window_add(self, rule_id: str, group_key: str, entry: WindowEntry, spec: Threshold,
                   now: float) -> WindowResult:
        """Offer a matching event to the threshold window of (rule, group), atomically."""

    @abstractmethod
    def suppress_try(self, rule_id: str, group_key: str, until: float, now: float, token: str) -> bool:
        """Atomic test-and-set of a group's suppression: True = this firing may go out."""

    @abstractmethod
    def digest_add(self, rule_id: str, period_start: float, period_end: float, due_at: float,
                   jti: str, time: float, item: dict[str, Any], max_items: int) -> bool:
        """Add a match to a digest period; False when its jti is already there."""

    @abstractmethod
    def digest_due(self, rule_id: str, now: float) -> list[DigestBatch]:
        """Digest periods of the rule due at `now`, oldest first; kept until digest_done()."""

    @abstractmethod
    def digest_done(self, rule_id: str, period_start: float) -> None: ...

    @abstractmethod
    def prune_state(self, now: float) -> int:
        """Delete expired windows and suppressions; how many."""

    @abstractmethod
    def state_size(self) -> int:
        """Rows or keys held for stateful rules."""

    def enqueue_jobs(self, jobs: list[NewJob], now: float) -> None:
        """Create jobs that belong to no stored event (a digest's firing); existing keys are skipped.
        complete_event() with an empty jti (never an event's: envelopes require one) does exactly that."""
        self.complete_event("", [], jobs, now)
