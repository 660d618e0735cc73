"""The processor: evaluates stored events against the current rule set and queues the matched actions.

It claims pending events with a lease (a process killed mid-evaluation leaves them claimable again), and
records each event's decisions and creates its delivery jobs in one store transaction, so an event is
evaluated into jobs exactly once in effect (job keys are unique: a re-evaluation after a crash adds none).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable

from engine.verify.envelope import parse_envelope
from engine.errors import IdhooksError
from engine.metrics import Metrics
from engine.match.jobs import jobs_for
from engine.match.stateful.evaluator import StatefulRules
from engine.runtime import Current
from engine.store.base import NewJob, Store, StoredEvent

log = logging.getLogger("idhooks.processor")


class Processor:
    """Background thread turning pending events into decisions and jobs. `rules` holds the current
    evaluator (a reload swaps it)."""

    def __init__(self, store: Store, rules: Current[StatefulRules], *, metrics: Metrics,
                 clock: Callable[[], float] = time.time, lease: float = 60.0, batch: int = 256,
                 on_jobs: Callable[[], None] = lambda: None, poll_interval: float = 1.0,
                 linger: float = 0.003) -> None:
        self.store, self.rules, self.metrics, self.clock = store, rules, metrics, clock
        self.lease, self.batch, self.on_jobs, self.poll_interval = lease, batch, on_jobs, poll_interval
        self.linger = linger
        self.owner = f"processor-{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        self._wake.set()

    def evaluate(self, event: StoredEvent) -> tuple[list[dict[str, Any]], list[NewJob]]:
        """Decisions (JSON records) and jobs for one stored event, with the current rule set."""
        envelope = parse_envelope(event.body)
        ruleset = self.rules.get()
        records: list[dict[str, Any]] = [{"warning": warning} for warning in envelope.warnings]
        jobs: list[NewJob] = []
        for uri in envelope.uris:
            for decision in ruleset.evaluate(envelope, uri, event.webhook, now=event.received_at):
                records.append({**decision.to_json(), "uri": uri})
                if decision.matched:
                    jobs.extend(jobs_for(event.jti, event.received_at, decision))
                    self.count_shadowed(decision)
        return records, jobs

    def count_shadowed(self, decision: Any) -> None:
        """idhooks_actions_shadowed_total: the actions a shadow rule would have sent."""
        if decision.shadow and decision.actions:
            self.metrics.actions_shadowed.labels(decision.rule_id).inc(len(decision.actions))

    def run_once(self) -> int:
        """Evaluate every pending event that is due now; how many were processed."""
        done = 0
        while not self._stop.is_set():
            events = self.store.claim_events(self.owner, self.lease, self.batch, self.clock())
            if not events:
                return done
            results = [self._evaluate_safely(event) for event in events]
            self.store.complete_events(results, self.clock())  # one transaction for the batch
            for jti, _, jobs in results:
                self._report(jti, jobs)
            done += len(events)

    def _evaluate_safely(self, event: StoredEvent) -> tuple[str, list[dict[str, Any]], list[NewJob]]:
        try:
            records, jobs = self.evaluate(event)
        except (IdhooksError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # A rule bug must not wedge the queue: record the failure on the event and move on.
            log.error("could not evaluate event", extra={"jti": event.jti, "error": str(exc)})
            records, jobs = [{"error": f"evaluation failed: {exc}"}], []
        return event.jti, records, jobs

    def _report(self, jti: str, jobs: list[NewJob]) -> None:
        matched = sorted({job.rule for job in jobs})
        for rule_id in matched:
            self.metrics.rule_matches.labels(rule_id).inc()
        if jobs:
            log.info("rules matched", extra={"jti": jti, "rules": matched, "jobs": len(jobs)})
            self.on_jobs()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except IdhooksError as exc:
                log.error("processor: store error, retrying", extra={"error": str(exc)})
            if self._wake.wait(self.poll_interval):
                # Let a burst gather for a few ms: one claim and one completion per batch instead of per
                # event halves the processor's CPU under load, for a few ms of added latency.
                self._stop.wait(self.linger)
            self._wake.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="idhooks-processor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
