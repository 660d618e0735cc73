"""The store interface: events, de-duplication, rule decisions, the delivery queue, subscriptions and the
quarantine. SQLite (engine/store/sqlite.py) is the embedded default; Redis (engine/store/redis.py) and
PostgreSQL (engine/store/postgres.py) the shared backends for several processes. tests/test_store_contract.py
runs one contract suite against every backend.

Every payload crossing this interface is JSON-able (never pickle). Every time is a float of epoch seconds
passed in by the caller (the app's clock), so tests control time without sleeping.

Event life cycle:  ingest() -> status 'pending' -> claim_events() (leased) -> complete_event() -> 'processed'
                   (an event whose iat is older than the de-duplication window is stored as 'stale' and never
                   evaluated). A lease that expires (the process died) makes the event claimable again.
                   An event whose evaluation or recording fails: fail_event() -> 'pending' again later
                   (attempts+1), and after the last attempt 'failed' with the reason as its decision record.
Job life cycle:    complete_event() (an event's jobs) or enqueue_jobs() (a digest's) creates jobs
                   'pending' -> claim_jobs() (leased) -> ack_job() 'done'
                   | retry_job() 'pending' with a later due_at | dead_job() 'dead' -> requeue_dead() 'pending'.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
import hashlib
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from engine import jsontext
from engine.errors import StoreError
from engine.store.state import DetectionStateStore, StateStore

if TYPE_CHECKING:  # handoff.py holds StoredEvents: a run-time import would be circular
    from engine.store.handoff import EventHandoff, JobHandoff

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
STALE = "stale"

EVENT_STATUSES = ("pending", "processed", "stale", "failed")
"""What `Store.list_events(status=...)` and `idhooks events list --status` take."""

APPENDED = "appended"
FULL = "full"
MISSING = "missing"
NOT_EVALUATED = "not evaluated"
"""append_decisions(): the event has no decisions yet (still pending): its evaluation would replace them, so
nothing is added; the caller tries again once it is evaluated."""
MAX_APPENDED = 20
"""The most decision records Store.append_decision() adds to one event (firings of absence timers and digest
periods, recorded on the event that started them): a busy or hostile rule set cannot grow one event without
limit."""


def strict_json(value: Any, what: str) -> str:
    """`value` as standard JSON, refusing NaN/Infinity (Python's json writes them, SQLite's json functions
    and most readers reject them): the last line of defence, so a stored record is always valid JSON."""
    try:
        return jsontext.dumps(value)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"refused to store {what}: not valid JSON ({exc})") from None


SCAN_CAP = 10_000
"""The most rows the default (unindexed) page queries read in one call."""


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
    status: str  # pending | processed | stale | failed
    decisions: list[dict[str, Any]] | None = None
    processed_at: float | None = None
    attempts: int = 0  # failed evaluations or recordings so far (fail_event)


@dataclass(frozen=True)
class NewJob:
    """One outbound delivery to make: the rendered action of one matched rule (or one digest firing).

    Built by engine/match/jobs.py (jobs_for), queued with Store.complete_event() or Store.enqueue_jobs(),
    read back as a Job by engine/deliver/worker.py. `key` is unique per (event, rule, action index) or
    (firing, action index): creating it twice is a no-op, so re-evaluating an event after a crash never
    doubles a delivery. It is also the Idempotency-Key sent to the destination.
    """

    key: str
    destination: str                    # a destination name from config.yaml; '' for destination-less actions
    action: str                         # the action type (actions/<type>.py), e.g. 'slack'
    message: Mapping[str, Any]          # the rendered rule fields the action sends (plain JSON)
    rule: str = ""                      # the rule that matched
    jti: str = ""                       # the event (or the firing id of a digest)
    index: int = 0                      # the action's position in the rule's `actions:`
    retry: Mapping[str, Any] | None = None  # the rule's `retry:` override of the retry policy
    received_at: float | None = None    # when the event arrived (delivery latency is measured from it)
    ordered_by: str = ""                # the rendered `ordered_by:` key ('' = not ordered)
    captured_nonce: str = ""            # set when the message holds `captured` placeholders (filled at send)

    @property
    def order_key(self) -> str:
        """The ordering scope, (destination, ordered_by) hashed to a bounded size: jobs with the same one are
        delivered in event order (received_at, then creation), one at a time; '' when unordered."""
        return _digest(f"{self.destination}\0{self.ordered_by}") if self.ordered_by else ""

    @property
    def capture_ref(self) -> str:
        """Where values captured for this job's `ordered_by` key are stored (shared by every destination)."""
        return capture_ref(self.ordered_by) if self.ordered_by else ""

    def to_json(self) -> dict[str, Any]:
        """The stored payload (every backend keeps this JSON next to key and destination)."""
        payload: dict[str, Any] = {"type": self.action, "rule": self.rule, "jti": self.jti, "index": self.index,
                                   "fields": self.message, "received_at": self.received_at}
        if self.retry is not None:
            payload["retry"] = self.retry
        if self.ordered_by:
            payload["ordered_by"] = self.ordered_by
        if self.captured_nonce:
            payload["captured_nonce"] = self.captured_nonce
        return payload

    @staticmethod
    def fields_from_json(payload: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of NewJob/Job read from a stored payload (backends call this). Jobs
        stored before `retry` became its own field carried it inside the message: it is moved out."""
        message = payload.get("fields", {})
        retry = payload.get("retry")
        if retry is None and isinstance(message, dict) and "retry" in message:
            message = dict(message)
            retry = message.pop("retry")
        received = payload.get("received_at")
        return {"action": str(payload.get("type", "")), "message": message, "rule": str(payload.get("rule", "")),
                "jti": str(payload.get("jti", "")), "index": payload.get("index", 0), "retry": retry,
                "received_at": received if isinstance(received, (int, float)) else None,
                "ordered_by": str(payload.get("ordered_by", "")),
                "captured_nonce": str(payload.get("captured_nonce", ""))}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def capture_ref(ordered_by: str) -> str:
    """The store key of the values captured for one `ordered_by` value (hashed: any length, fixed size)."""
    return _digest(ordered_by)


@dataclass(frozen=True, kw_only=True)
class Job(NewJob):
    """A queued NewJob with its place in the queue. Status 'failed' = pending with at least one failed
    attempt (a retry is scheduled)."""

    id: str
    status: str  # pending | failed | dead | done
    attempts: int
    created_at: float
    due_at: float
    last_error: str = ""
    last_response: str = ""
    lease_owner: str = ""
    window_start: float | None = None  # when the retry window began: created_at, or the last re-queue
    lease_until: float = 0.0  # a handed job's lease end (engine/store/handoff.py); 0: leased by the claim now

    @classmethod
    def queued(cls, job: NewJob, *, id: str, now: float, lease_owner: str, lease_until: float) -> Job:
        """`job` as it was just queued (pending, due now) and leased: what a store hands over in memory. Equal
        to the Job its row reads back as, but built without the dataclass __init__: a frozen one sets each of
        its 21 fields through object.__setattr__, ~6 µs per job in the processor's record step (issue 14)."""
        made = object.__new__(cls)
        fields = made.__dict__
        fields.update(job.__dict__)
        fields.update(id=id, status="pending", attempts=0, created_at=now, due_at=now, last_error="",
                      last_response="", lease_owner=lease_owner, window_start=None, lease_until=lease_until)
        return made

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
    """A refused event's raw bytes, kept so a fixed secret can re-verify and ingest it. `source` is the
    sender's address: a full quarantine evicts from the source holding the most entries."""

    id: str
    webhook: str
    received_at: float
    reason: str
    headers: dict[str, str]
    body: bytes
    source: str = ""


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


def with_appended(decisions: list[dict[str, Any]] | None, record: dict[str, Any],
                  now: float) -> tuple[list[dict[str, Any]] | None, str]:
    """One record appended to one event's decisions: (the new decision list, or None to leave it unchanged;
    the status). See Store.append_decisions()."""
    later = [r for r in decisions or [] if "appended_at" in r]
    if record.get("firing") and any(r.get("rule") == record.get("rule") and r.get("firing") == record["firing"]
                                    for r in later):
        return None, DUPLICATE
    if sum("warning" not in r for r in later) >= MAX_APPENDED:
        if any("warning" in r for r in later):
            return None, FULL
        warning = (f"later firings beyond {MAX_APPENDED} are not recorded on this event (the log lines "
                   "'shadow rule would send' and 'absence timer expired' name them)")
        return [*(decisions or []), {"warning": warning, "appended_at": now}], FULL
    return [*(decisions or []), {**record, "appended_at": now}], APPENDED


def appending(stored: Mapping[str, list[dict[str, Any]] | None], items: Sequence[tuple[str, dict[str, Any]]],
              now: float) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """What Store.append_decisions() writes, given the current decisions of the stored events among `items`
    (jti -> decisions): (jti -> new decisions, for the events that change; one status per item). Every backend
    calls this inside its own transaction, so they agree on duplicates and the cap."""
    changed: dict[str, list[dict[str, Any]]] = {}
    statuses = []
    for jti, record in items:
        if jti not in stored:
            statuses.append(MISSING)
            continue
        if stored[jti] is None:
            statuses.append(NOT_EVALUATED)
            continue
        decisions, status = with_appended(changed.get(jti, stored[jti]), record, now)
        if decisions is not None:
            changed[jti] = decisions
        statuses.append(status)
    return changed, statuses


def event_order(event: StoredEvent) -> tuple[float, str]:
    """The listing order of events: newest first, ties by jti."""
    return (-event.received_at, event.jti)


def job_order(job: Job) -> tuple[float, str]:
    """The listing order of jobs: newest first, ties by id."""
    return (-job.created_at, job.id)


def after(order: tuple[float, str], before: tuple[float, str] | None) -> bool:
    """True when a row whose order key is `order` is listed after the cursor row `before` = (time, id)."""
    return before is None or order > (-before[0], before[1])


class Store(StateStore, DetectionStateStore):
    """One deployment's durable state. Implementations are thread-safe. The stateful-rule operations
    (window_add, suppress_try, digest_*, prune_state, state_size) are declared once, on StateStore."""

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

    def hand_over_new_events(self, handoff: EventHandoff | None) -> bool:
        """From now on, store each new pending event already leased to `handoff.owner` and put it in
        `handoff` after its commit, as room allows (engine/store/handoff.py); None stops it. False where the
        backend does not (the processor claims every event)."""
        return False

    def release_leases(self, owner: str, jtis: list[str]) -> None:
        """Give back the leases `owner` holds on these pending events (a stopping processor's hand-off), so
        that a claim takes them at once rather than after the lease."""

    def hand_over_new_jobs(self, handoff: JobHandoff | None) -> bool:
        """From now on, queue each new job that engine/store/handoff.handed() allows already leased to
        `handoff.owner` (the delivery worker) and put it in `handoff` after its commit, as room allows; None
        stops it. False where the backend does not (the worker claims every job)."""
        return False

    def release_jobs(self, owner: str, job_ids: list[str]) -> None:
        """Give back the leases `owner` holds on these pending jobs (a stopping worker's hand-off)."""

    # -- events ------------------------------------------------------------------------------------
    @abstractmethod
    def ingest(self, event: IncomingEvent, dedup_window: float) -> str:
        """Store the event durably and return ACCEPTED, DUPLICATE or STALE. Returns only once the event
        is committed. A `jti` seen within `dedup_window` seconds is DUPLICATE (atomic, also when two copies
        race). An event whose iat is older than the window is stored as STALE and never evaluated.
        Raises StoreError when the store cannot commit."""

    def ingest_soon(self, event: IncomingEvent, dedup_window: float,
                    done: Callable[[str | None, BaseException | None], None]) -> bool:
        """Start `ingest` without waiting for the commit, where the backend can: it then calls
        `done(outcome, None)` or `done(None, error)` from another thread once the event is committed or
        failed, and returns True. False (the default): the caller runs `ingest` in a thread of its own."""
        return False

    @abstractmethod
    def get_event(self, jti: str) -> StoredEvent | None: ...

    @abstractmethod
    def list_events(self, since: float | None = None, limit: int = 100,
                    status: str | None = None) -> list[StoredEvent]:
        """Newest first; `since` compares with received_at; `status` one of EVENT_STATUSES or None for all."""

    def events_before(self, before: tuple[float, str] | None, since: float | None, until: float | None,
                      limit: int) -> list[StoredEvent]:
        """A page of events in list order (newest first, then jti), received within [since, until], that
        come after `before` = (received_at, jti) of the previous page's last event. Backends override it
        with an indexed query; this default reads at most SCAN_CAP events."""
        events = [e for e in self.list_events(since=since, limit=SCAN_CAP)
                  if (until is None or e.received_at <= until) and after(event_order(e), before)]
        return sorted(events, key=event_order)[:limit]

    @abstractmethod
    def claim_events(self, owner: str, lease: float, limit: int, now: float) -> list[StoredEvent]:
        """Pending events not leased (or whose lease expired), oldest first, leased to `owner`."""

    @abstractmethod
    def complete_event(self, jti: str, decisions: list[dict[str, Any]], jobs: list[NewJob], now: float) -> None:
        """In one transaction: record the rule decisions, create the jobs (existing keys are skipped) and
        mark the event processed."""

    @abstractmethod
    def fail_event(self, jti: str, error: str, now: float, retry_at: float | None) -> None:
        """Evaluating or recording the event failed: attempts+1, lease released. With `retry_at` it is
        claimable again from then (the events behind it go on meanwhile); with None it is given up:
        status 'failed', its decision record `[{"error": error}]`."""

    def complete_events(self, items: list[tuple[str, list[dict[str, Any]], list[NewJob]]], now: float) -> None:
        """complete_event() for several events; backends override it to share one transaction."""
        for jti, decisions, jobs in items:
            self.complete_event(jti, decisions, jobs, now)

    @abstractmethod
    def append_decisions(self, items: Sequence[tuple[str, dict[str, Any]]], now: float) -> list[str]:
        """Add decision records (plain JSON) to stored events' decisions, each item (jti, record) in order, in one
        transaction; each record is marked `appended_at: now`. Used for a rule that fired later than its
        event was evaluated (an absence timer, a digest period). One status per item: APPENDED; DUPLICATE (a
        record of the same rule and `firing` is there already: a firing fired again after a crash is recorded
        once); MISSING (no such event, e.g. pruned); or FULL (the event already holds MAX_APPENDED appended
        records: nothing is added but, the first time, one `warning` record saying that later firings are not
        recorded); or NOT_EVALUATED (the event has no decisions yet: its evaluation, which writes the whole
        list, would drop the record, so nothing is added and the caller tries again later). The shared logic:
        appending()."""

    @abstractmethod
    def prune(self, now: float, retention: float, dedup_window: float) -> int:
        """Delete events older than `retention` and de-duplication keys older than the window; the
        number of events removed."""

    @abstractmethod
    def last_accepted(self) -> dict[str, float]:
        """webhook name -> received_at of its newest stored event."""

    # -- delivery queue ----------------------------------------------------------------------------
    @abstractmethod
    def enqueue_jobs(self, jobs: list[NewJob], now: float) -> None:
        """Create jobs that belong to no stored event (a digest's firing), atomically; existing keys are
        skipped (a digest period fired again after a crash adds nothing)."""

    @abstractmethod
    def claim_jobs(self, owner: str, lease: float, limit: int, now: float,
                   skip_destinations: frozenset[str] = frozenset()) -> list[Job]:
        """Due pending jobs (due_at <= now) not leased or whose lease expired, oldest due first."""

    @abstractmethod
    def ack_jobs(self, job_ids: list[str], now: float) -> None:
        """The jobs were delivered: status 'done', attempts+1, lease released. One write for all of them (one
        statement in SQL, one round trip of per-job atomic scripts in Redis): the delivery worker acknowledges
        what it delivered of a claimed batch at once."""

    def ack_job(self, job_id: str, now: float) -> None:
        """The job was delivered: status 'done'."""
        self.ack_jobs([job_id], now)

    @abstractmethod
    def retry_job(self, job_id: str, due_at: float, error: str, response: str = "") -> None:
        """The attempt failed but may succeed later: attempts+1, pending again at due_at."""

    @abstractmethod
    def dead_job(self, job_id: str, error: str, response: str = "") -> None:
        """No more attempts: attempts+1, status 'dead' with the last error."""

    @abstractmethod
    def get_job(self, job_id: str) -> Job | None: ...

    # -- captured values (http `capture:`, read by `{{ captured.NAME }}`) ----------------------------------
    @abstractmethod
    def capture_set(self, ref: str, values: Mapping[str, Any], now: float) -> None:
        """Merge `values` (plain JSON) into what is captured under `ref` (NewJob.capture_ref)."""

    @abstractmethod
    def captures(self, ref: str) -> dict[str, Any]:
        """Everything captured under `ref` ({} when nothing). Captures are kept while the key has events:
        complete_event() notes the key's newest event time and prune() drops the captures of a key whose
        newest event is past retention."""

    @abstractmethod
    def list_jobs(self, status: str | None = None, limit: int = 100) -> list[Job]:
        """Jobs by status ('pending' | 'failed' | 'dead' | 'done' | None for all), newest first."""

    def jobs_before(self, status: str | None, destination: str | None, before: tuple[float, str] | None,
                    limit: int) -> list[Job]:
        """A page of list_jobs(status) for one destination (or all), after `before` = (created_at, id) of
        the previous page's last job. This default reads at most SCAN_CAP jobs."""
        jobs = [j for j in self.list_jobs(status, SCAN_CAP)
                if (destination is None or j.destination == destination) and after(job_order(j), before)]
        return sorted(jobs, key=job_order)[:limit]

    def jobs_for_event(self, jti: str) -> list[Job]:
        """The delivery jobs an event's matched rules created (each job names its event)."""
        return [j for j in self.list_jobs(None, SCAN_CAP) if j.jti == jti]

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
        """Keep the entry; while over either cap, evict the oldest entry of the source that holds the most
        entries (the oldest of all on a tie), so a flood of refused requests from one sender evicts its own
        entries, not a genuine delivery signed with a wrong secret. An entry bigger than max_bytes alone is
        not stored (stored=False)."""

    @abstractmethod
    def quarantine_list(self) -> list[QuarantineEntry]:
        """Oldest first."""

    @abstractmethod
    def quarantine_remove(self, entry_id: str) -> bool: ...

    # -- numbers for metrics -----------------------------------------------------------------------
    @abstractmethod
    def stats(self) -> StoreStats: ...
