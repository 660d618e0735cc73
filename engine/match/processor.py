"""The processor: evaluates stored events against the current rule set and queues the matched actions.

It claims pending events with a lease (a process killed mid-evaluation leaves them claimable again), or,
while it runs on a store that supports it, takes the events this process's intake stored already leased to
it (engine/store/handoff.py). It records each event's decisions and creates its delivery jobs in one store
transaction, so an event is evaluated into jobs exactly once in effect (job keys are unique: a
re-evaluation after a crash adds none).

One event never blocks another: a batch is recorded in one transaction, and when that fails the events are
recorded one by one, so only the event at fault is held back. An event whose evaluation or recording fails
is retried after a growing delay (`RETRY_DELAYS`) and then marked 'failed' with the reason (at once when
its stored body no longer parses: an old database may hold what intake now refuses) (`idhooks events
list --status failed`, metric idhooks_event_failures_total). Decisions and job payloads are made valid
JSON before they are recorded (NaN/Infinity from an event become strings), so no event can poison a batch.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import replace
from typing import Any, Callable

from engine.verify.envelope import RecentEnvelopes
from engine import jsontext, logs
from engine.errors import IdhooksError, PayloadError
from engine.metrics import Metrics
from engine.match.jobs import jobs_for
from engine.match.stateful.evaluator import StatefulRules
from engine.runtime import Current
from engine.store.base import NewJob, Store, StoredEvent
from engine.store.handoff import EventHandoff

log = logging.getLogger("idhooks.processor")


RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0)
"""Seconds before each new attempt of an event that failed; after the last, the event is 'failed'."""


_PLAIN = frozenset({str, int, bool, type(None)})
"""Types of JSON values that are finite as they are: skipped without a call (most of a record's values)."""


def finite(value: Any) -> Any:
    """`value` with every NaN/Infinity float replaced by its name as a string, so it is valid JSON; `value`
    itself when it holds none (nearly always: copying every decision and message was a tenth of the
    processor's time, issue 14). One fast pass of orjson answers for most values (engine/jsontext.py); the
    others are walked, strings, integers, booleans and None inside passed over without a call."""
    return value if jsontext.certainly_finite(value) else _finite(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        copied = None
        for key, item in value.items():
            if type(item) in _PLAIN:
                continue
            fixed = _finite(item)
            if fixed is not item:
                copied = copied if copied is not None else dict(value)
                copied[key] = fixed
        return value if copied is None else copied
    if isinstance(value, (list, tuple)):
        items = None
        for index, item in enumerate(value):
            if type(item) in _PLAIN:
                continue
            fixed = _finite(item)
            if fixed is not item:
                items = items if items is not None else list(value)
                items[index] = fixed
        return value if items is None else items
    return value


def _describe(exc: BaseException) -> str:
    """One line naming the failure, safe to store (a lone surrogate from event data is escaped)."""
    text = f"{type(exc).__name__}: {exc}"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:1000]


class Processor:
    """Background thread turning pending events into decisions and jobs. `rules` holds the current
    evaluator (a reload swaps it)."""

    def __init__(self, store: Store, rules: Current[StatefulRules], *, metrics: Metrics,
                 clock: Callable[[], float] = time.time, lease: float = 60.0, batch: int = 256,
                 on_jobs: Callable[..., None] = lambda jobs=None, destinations=None: None, poll_interval: float = 1.0,
                 linger: float = 0.003, recent: RecentEnvelopes | None = None) -> None:
        self.store, self.rules, self.metrics, self.clock = store, rules, metrics, clock
        self.lease, self.batch, self.on_jobs, self.poll_interval = lease, batch, on_jobs, poll_interval
        self.linger = linger
        self.recent = recent or RecentEnvelopes()  # empty unless intake shares its own: then it only parses
        self.owner = f"processor-{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handoff: EventHandoff | None = None  # while started, where the store supports it
        self._next_claim = 0.0  # time.monotonic() of the next claim from the store when events are handed
        self._backlog = False  # the last claim was a full batch: claim again before taking handed events

    def notify(self) -> None:
        if not self._wake.is_set():  # every accepted event notifies: the check spares a Condition round trip
            self._wake.set()

    def evaluate(self, event: StoredEvent) -> tuple[list[dict[str, Any]], list[NewJob]]:
        """Decisions (JSON records) and jobs for one stored event, with the current rule set."""
        envelope = self.recent.parse(event.jti, event.body)
        ruleset = self.rules.get()
        records: list[dict[str, Any]] = [{"warning": warning} for warning in envelope.warnings]
        jobs: list[NewJob] = []
        for uri in envelope.uris:
            for decision in ruleset.evaluate(envelope, uri, event.webhook, now=event.received_at):
                records.append(finite({**decision.to_json(), "uri": uri}))
                if decision.matched:
                    for job in jobs_for(event.jti, event.received_at, decision):
                        message = finite(job.message)
                        jobs.append(job if message is job.message else replace(job, message=message))
                    self.count_shadowed(decision)
        return records, jobs

    def count_shadowed(self, decision: Any) -> None:
        """idhooks_actions_shadowed_total: the actions a shadow rule would have sent."""
        if decision.shadow and decision.actions:
            self.metrics.child(self.metrics.actions_shadowed, decision.rule_id).inc(len(decision.actions))

    def run_once(self) -> int:
        """Evaluate every pending event that is due now; how many were claimed."""
        done = 0
        while not self._stop.is_set():
            events = self._next_batch()
            if not events:
                return done
            results: list[tuple[str, list[dict[str, Any]], list[NewJob]]] = []
            failures: list[tuple[StoredEvent, str, bool]] = []  # (event, reason, permanent)
            for event in events:
                try:
                    results.append((event.jti, *self.evaluate(event)))
                except PayloadError as exc:  # stored before intake refused such bodies: it never will parse
                    failures.append((event, f"evaluation failed: {_describe(exc)}", True))
                except Exception as exc:  # noqa: BLE001 - a rule or plugin bug must not wedge the queue
                    failures.append((event, f"evaluation failed: {_describe(exc)}", False))
            recorded, refused = self._record(results)
            by_jti = {event.jti: event for event in events}
            failures += [(by_jti[jti], reason, False) for jti, reason in refused]
            for event, reason, permanent in failures:
                self._fail(event, reason, permanent)
            for jti, _, jobs in recorded:
                self._report(jti, jobs)
            if queued := sum(len(jobs) for _, _, jobs in recorded):  # once per batch: wakes delivery workers
                self.on_jobs(queued, {job.destination for _, _, jobs in recorded for job in jobs})
            done += len(events)

    def _next_batch(self) -> list[StoredEvent]:
        """Handed events, oldest first; claimed ones (the store's oldest pending) once a poll interval, while
        the last claim found a backlog, and when the hand-off closed and has been drained."""
        handoff = self._handoff
        if handoff is None:
            return self.store.claim_events(self.owner, self.lease, self.batch, self.clock())
        if not self._backlog:
            events = handoff.take(self.batch, self.clock())
            if events or (not handoff.overflowed and time.monotonic() < self._next_claim):
                return events
        if handoff.overflowed:
            handoff.reopen()  # drained: later events are handed, those stored unleased meanwhile claimed now
        events = self.store.claim_events(self.owner, self.lease, self.batch, self.clock())
        self._backlog = len(events) >= self.batch
        self._next_claim = time.monotonic() + self.poll_interval
        return events or handoff.take(self.batch, self.clock())

    def _record(self, results: list[tuple[str, list[dict[str, Any]], list[NewJob]]]) \
            -> tuple[list[tuple[str, list[dict[str, Any]], list[NewJob]]], list[tuple[str, str]]]:
        """Record the batch in one transaction; if that fails, one event at a time, so the others go on.
        (what was recorded, [(jti, reason)] of what could not be)."""
        if not results:
            return [], []
        try:
            self.store.complete_events(results, self.clock())
            return results, []
        except Exception:  # noqa: BLE001 - find the event at fault below
            log.warning("recording a batch of %d events failed; recording them one by one", len(results))
        recorded, refused = [], []
        for item in results:
            try:
                self.store.complete_events([item], self.clock())
                recorded.append(item)
            except Exception as exc:  # noqa: BLE001 - this event is held back, not the batch
                refused.append((item[0], f"recording failed: {_describe(exc)}"))
        return recorded, refused

    def _fail(self, event: StoredEvent, reason: str, permanent: bool) -> None:
        """Retry the event later, or give it up once RETRY_DELAYS are used up (at once when `permanent`)."""
        attempt = event.attempts + 1
        now = self.clock()
        retry_at = now + RETRY_DELAYS[attempt - 1] if attempt <= len(RETRY_DELAYS) and not permanent else None
        self.store.fail_event(event.jti, reason, now, retry_at)
        outcome = "retry" if retry_at is not None else "failed"
        self.metrics.event_failures.labels(outcome).inc()
        details = {"jti": event.jti, "attempt": attempt, "error": reason}
        if retry_at is None:
            log.error("event failed for good (idhooks events list --status failed)", extra=details)
        else:
            log.warning("event failed, will retry", extra={**details, "retry_in": retry_at - now})

    def _report(self, jti: str, jobs: list[NewJob]) -> None:
        matched = sorted({job.rule for job in jobs})
        for rule_id in matched:
            self.metrics.child(self.metrics.rule_matches, rule_id).inc()
        if jobs:  # a line per matching event: the shortest logging path, like intake's line per request
            logs.event_line(log, "rules matched", {"jti": jti, "rules": matched, "jobs": len(jobs)})

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except IdhooksError as exc:
                log.error("processor: store error, retrying", extra={"error": str(exc)})
            except Exception:
                log.exception("processor: unexpected error, retrying")
            if self._wake.wait(self.poll_interval):
                # Let a burst gather for a few ms: one claim and one completion per batch instead of per
                # event halves the processor's CPU under load, for a few ms of added latency.
                self._stop.wait(self.linger)
            self._wake.clear()

    def start(self) -> None:
        handoff = EventHandoff(self.owner, self.lease, on_put=self.notify)
        self._handoff = handoff if self.store.hand_over_new_events(handoff) else None
        self._next_claim, self._backlog = 0.0, False  # the first batch is claimed: what was stored before
        self._thread = threading.Thread(target=self._loop, name="idhooks-processor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        handoff, self._handoff = self._handoff, None
        if handoff is not None:
            self.store.hand_over_new_events(None)
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        if handoff is not None:  # handed but not evaluated: claimable at once by whoever runs next
            try:
                self.store.release_leases(self.owner, handoff.jtis())
            except IdhooksError as exc:
                log.warning("could not give back the leases of handed events; they expire after the lease",
                            extra={"error": str(exc)})
