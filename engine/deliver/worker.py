"""The delivery worker: claims due jobs from the store and sends them with the running actions.

At-least-once: a job is claimed with a lease and acknowledged only after the send succeeded, so a crash
mid-send leaves it to be claimed again when the lease expires; the job key travels as the
Idempotency-Key so the target can make that once in effect. Every attempt has a deadline that ends before
its lease (actions/deadline.py): a target that answers too slowly is cut off and the attempt counts as a
retryable failure, so a live process never still sends a job that another process may have claimed.

A slow or dead destination cannot starve the others: each destination has at most
`delivery.per_destination_concurrency` sends in flight in this process, and claims skip destinations at
their limit. Below it, a destination gets another concurrent sender only while each send in flight to it has
waited PARALLEL_AFTER for its answer: a fast target is served by one thread sending back to back (two threads
taking turns on the GIL for one fast target cost ~40 % more CPU per delivery and delivered less, issue 14),
a slow one by up to the limit. Workers sleep on a condition that `notify()` (called when jobs are created)
wakes at once, and otherwise poll every `poll_interval` seconds for retries that became due.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter
from typing import Any, Callable, Collection, Mapping

from actions import ActionSet
from actions.deadline import deadline
from engine.deliver.backoff import RetryPolicy
from engine.deliver.captures import fill
from engine.config.settings import DeliveryConfig
from engine.errors import DeliveryError, PermanentError, RetryableError
from engine.metrics import Metrics
from engine.runtime import Current
from engine.secrets import redact
from engine.store.base import Job, Store
from engine.store.handoff import JobHandoff

log = logging.getLogger("idhooks.worker")

BATCH = 16
"""At most this many jobs of one destination per claim, when it has a backlog."""
BACKLOG_AGE = 0.05
"""A claimed job due longer ago than this (seconds) means the destination has a backlog."""
PARALLEL_AFTER = 0.01
"""Seconds every send in flight to a destination must have waited before another sender joins it."""


def lease_margin(lease: float) -> float:
    """How long before its lease ends an attempt is abandoned: time to record the outcome (and for the
    clocks of a shared store's hosts to disagree a little) before another process may claim the job."""
    return min(max(lease / 10, 1.0), lease / 2)


class DeliveryWorker:
    """Worker threads delivering the store's jobs. `actions` holds the current ActionSet (a config reload
    swaps it)."""

    def __init__(self, store: Store, actions: Current[ActionSet], delivery: DeliveryConfig,
                 metrics: Metrics, clock: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random, owner: str | None = None,
                 poll_interval: float = 0.25, parallel_after: float = PARALLEL_AFTER) -> None:
        self.store, self.delivery, self.metrics = store, delivery, metrics
        self.actions = actions
        self.clock, self.rng, self.poll_interval, self.parallel_after = clock, rng, poll_interval, parallel_after
        self.owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
        self.policy = RetryPolicy.from_delivery(delivery)
        self._in_flight: Counter[str] = Counter()
        self._sending: dict[str, dict[int, float]] = {}  # destination -> worker index -> its attempt's start
        self._claim_lock = threading.Lock()  # guards _in_flight and makes check-then-claim atomic
        self._wake = threading.Condition()
        self._generation = 0
        self._stopping = threading.Event()
        self._threads: dict[int, threading.Thread] = {}
        self._handoff: JobHandoff | None = None  # while started, where the store supports it
        self._next_store_claim = 0.0  # time.monotonic() of the next claim from the store while jobs are handed

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start `delivery.workers` threads, and take new jobs from the processor in memory where the store
        supports it (engine/store/handoff.py)."""
        self._stopping.clear()
        handoff = JobHandoff(self.owner, self.delivery.lease)
        self._handoff = handoff if self.store.hand_over_new_jobs(handoff) else None
        self._next_store_claim = 0.0
        self._start_missing_threads()

    def _start_missing_threads(self) -> None:
        for index in range(self.delivery.workers):
            running = self._threads.get(index)
            if running is None or not running.is_alive():
                thread = threading.Thread(target=self._loop, args=(index,), name=f"delivery-{index}", daemon=True)
                thread.start()
                self._threads[index] = thread

    def apply(self, delivery: DeliveryConfig) -> None:
        """Take reloaded `delivery:` settings without a restart. The lease, retry policy, per-destination
        limit and shutdown grace apply from the next claim or attempt; a larger `workers` starts threads, a
        smaller one lets the extra threads finish their batch and exit."""
        with self._claim_lock:
            self.delivery = delivery
            self.policy = RetryPolicy.from_delivery(delivery)
            if self._handoff is not None:
                self._handoff.lease = delivery.lease
            if self._threads and not self._stopping.is_set():
                self._start_missing_threads()
        self.notify()  # idle threads above the new count wake up and exit

    def thread_count(self) -> int:
        """Delivery threads running now."""
        return sum(thread.is_alive() for thread in self._threads.values())

    def notify(self, jobs: int | None = None, destinations: Collection[str] | None = None) -> None:
        """New jobs exist: wake idle workers now instead of at the next poll; as many as there are new jobs
        when that is known (every woken worker runs a claim, and a claim that finds nothing is a write that
        other writers wait for), else all of them. Given the jobs' `destinations`, none for a destination whose
        sender will take them when its batch ends (it claims again before it ever sleeps)."""
        if jobs is not None and destinations is not None:
            jobs = min(jobs, sum(not self._full(d) for d in set(destinations)))
        with self._wake:
            self._generation += 1
            if jobs is None:
                self._wake.notify_all()
            else:
                self._wake.notify(jobs)

    def stop(self, grace: float | None = None) -> bool:
        """Stop claiming; wait up to `grace` seconds (default delivery.shutdown_grace) for in-flight sends.
        Returns False when some send was still running: its job stays leased and is claimed again once
        the lease expires, so nothing is lost."""
        self._stopping.set()
        handoff, self._handoff = self._handoff, None
        if handoff is not None:
            self.store.hand_over_new_jobs(None)
        self.notify()
        deadline = time.monotonic() + (self.delivery.shutdown_grace if grace is None else grace)
        for thread in self._threads.values():
            thread.join(max(deadline - time.monotonic(), 0))
        self._threads = {index: t for index, t in self._threads.items() if t.is_alive()}
        if handoff is not None:  # handed but not sent: claimable at once by whoever runs next
            try:
                self.store.release_jobs(self.owner, handoff.ids())
            except Exception:  # noqa: BLE001 - they stay leased and are claimed once the lease ends
                log.warning("could not give back the leases of handed jobs; they are sent after the lease ends")
        return not self._threads

    def run_once(self, limit: int = 100) -> int:
        """Deliver, one after the other in this thread, what is due now (at most `limit` attempts); how
        many attempts were made. For tests (with an injected clock) and one-shot commands."""
        attempts = 0
        while attempts < limit:
            jobs = self._claim()
            if not jobs:
                break
            attempts += self._deliver_batch(jobs)
        return attempts

    # -- claiming --------------------------------------------------------------------------------
    def _loop(self, index: int) -> None:
        while not self._stopping.is_set() and index < self.delivery.workers:
            with self._wake:
                generation = self._generation
            try:
                jobs = self._claim()
            except Exception:
                log.exception("claiming delivery jobs failed, retrying", extra={"after": self.poll_interval})
                jobs = []
            if jobs:
                self._deliver_batch(jobs, index)
                continue
            with self._wake:
                if self._generation == generation and not self._stopping.is_set():
                    self._wake.wait(self.poll_interval)

    def _claim(self) -> list[Job]:
        """Jobs of one destination below its concurrency limit (one slot in flight): handed ones (already
        leased to this worker), else claimed from the store: one job, and when that job had to wait (a backlog)
        up to BATCH-1 more of the same destination, so a busy queue costs one claim transaction per batch
        instead of one per job. The store is claimed from whenever nothing handed is waiting, and at least once
        a poll interval (retries that became due, jobs stored unleased while the hand-off was full)."""
        with self._claim_lock:
            now = self.clock()
            full = frozenset(d for d in list(self._in_flight) if self._full(d))
            if full and full >= self.actions.get().destination_names():
                return []  # every destination has its senders: a claim (a store write) would find nothing
            handoff = self._handoff
            if handoff is not None and time.monotonic() < self._next_store_claim:
                jobs = handoff.take(full, BATCH, now)
                if jobs:
                    self._in_flight[jobs[0].destination] += 1
                    return jobs
            if handoff is not None:
                if handoff.overflowed and handoff.drained():
                    handoff.reopen()  # later jobs are handed again; those stored unleased meanwhile are claimed
                self._next_store_claim = time.monotonic() + self.poll_interval
            jobs = self.store.claim_jobs(self.owner, self.delivery.lease, 1, now, skip_destinations=full)
            if not jobs:
                jobs = handoff.take(full, BATCH, now) if handoff is not None else []
                if jobs:
                    self._in_flight[jobs[0].destination] += 1
                return jobs
            destination = jobs[0].destination
            if now - jobs[0].due_at > BACKLOG_AGE:
                others = self.actions.get().destination_names() - {destination}
                jobs += self.store.claim_jobs(self.owner, self.delivery.lease, BATCH - 1, now,
                                              skip_destinations=frozenset(others))
            self._in_flight[destination] += 1
        return jobs

    def _full(self, destination: str) -> bool:
        """No other worker should claim for `destination` now: it is at its limit, or its senders get their
        answers quickly enough to need no help."""
        senders = self._in_flight[destination]
        return senders >= self.delivery.per_destination_concurrency or (senders > 0 and not self._slow(destination))

    def _slow(self, destination: str) -> bool:
        """Whether every send in flight to `destination` has waited `parallel_after` or more (none in flight yet:
        not slow, its batch is about to start)."""
        started = self._sending.get(destination)
        if not started:
            return False
        oldest_allowed = time.monotonic() - self.parallel_after
        return all(at <= oldest_allowed for at in list(started.values()))

    def _deliver_batch(self, jobs: list[Job], index: int = -1) -> int:
        """Send claimed jobs in order; stop early (the rest stay leased and are claimed again when the
        lease expires) on shutdown or when half the lease is used up. The delivered ones are acknowledged
        together at the end, in one store write, still before their lease ends (the last attempt is
        abandoned lease_margin() before it). How many were attempted."""
        started = time.monotonic()
        lease = self.delivery.lease
        ends = started + lease  # a claimed batch's lease began with its claim; a handed one's when it was queued
        handed_until = min((job.lease_until for job in jobs if job.lease_until), default=0.0)
        if handed_until:
            ends = min(ends, started + handed_until - self.clock())
        lease_end = ends - lease_margin(lease)
        attempted = 0
        delivered: list[tuple[Job, float]] = []
        destination = jobs[0].destination
        sending = self._sending.setdefault(destination, {})
        try:
            for job in jobs:
                if attempted and (self._stopping.is_set() or time.monotonic() > ends - lease / 2):
                    break
                sending[index] = time.monotonic()
                self._attempt(job, lease_end, delivered)
                attempted += 1
        finally:
            sending.pop(index, None)
            self._acknowledge(delivered)
            self._release(destination)
        return attempted

    def _release(self, destination: str) -> None:
        """Free the destination's slot; when it was full, wake one idle worker for its waiting jobs."""
        with self._claim_lock:
            was_full = self._in_flight[destination] >= self.delivery.per_destination_concurrency
            self._in_flight[destination] -= 1
            if self._in_flight[destination] <= 0:
                del self._in_flight[destination]
        if was_full:
            with self._wake:
                self._generation += 1
                self._wake.notify()

    def _attempt(self, job: Job, lease_end: float, delivered: list[tuple[Job, float]]) -> None:
        """One attempt, abandoned (a retryable failure) before the lease ends, so no other process can
        claim the job while this one may still be sending it."""
        try:
            with deadline(lease_end - time.monotonic()):
                self.deliver(job, delivered)
        except Exception:
            log.exception("could not record a delivery attempt", extra={"key": job.key})

    def _acknowledge(self, delivered: list[tuple[Job, float]]) -> None:
        """Record delivered jobs (job, when its send succeeded) as done in one store write, then count them."""
        if not delivered:
            return
        try:
            self.store.ack_jobs([job.id for job, _ in delivered], self.clock())
        except Exception:  # they stay leased: sent again once the lease ends (at least once)
            log.exception("could not record delivered jobs", extra={"keys": [job.key for job, _ in delivered]})
            return
        metrics = self.metrics
        for job, at in delivered:
            destination = job.destination or job.action
            metrics.child(metrics.action_successes, destination).inc()
            if job.received_at is not None:
                metrics.child(metrics.delivery_latency, destination).observe(max(at - job.received_at, 0.0))

    # -- one attempt -----------------------------------------------------------------------------
    def deliver(self, job: Job, delivered: list[tuple[Job, float]]) -> None:
        """One attempt: on success the job joins `delivered` (acknowledged with its batch), or is acknowledged
        at once when it has an order key (the next job of the key waits for it); on failure schedule a retry or
        dead-letter it."""
        destination = job.destination or job.action
        self.metrics.child(self.metrics.action_attempts, destination).inc()
        actions = self.actions.get()
        try:
            captured = self._send(job, actions)
        except DeliveryError as exc:
            self._failed(job, destination, exc, actions)
            return
        now = self.clock()
        if captured and job.capture_ref:  # before the ack: the next job of the key may start right after it
            self.store.capture_set(job.capture_ref, captured, now)
        if not job.order_key:
            delivered.append((job, now))
            return
        self._acknowledge([(job, now)])
        self.notify()  # the next job of this key is claimable now

    def _send(self, job: Job, actions: ActionSet) -> Mapping[str, Any] | None:
        """Send with the job's action (its `captured` values filled in first); what it captured from the
        answer. An unexpected exception from a plugin counts as a retryable attempt (backoff, then the
        dead-letter list) instead of leaving the job to loop on lease expiry, except a UnicodeError (a lone
        surrogate in event data), which no retry can fix: permanent."""
        action = actions.get(job.action, job.destination)
        message = job.message
        if job.captured_nonce:
            message = fill(job, self.store.captures(job.capture_ref), action.rule_fields)
        try:
            return action.send(message, job.key)
        except DeliveryError:
            raise
        except UnicodeError as exc:  # text from the event that no channel can encode: retrying cannot help
            raise PermanentError(f"the {action.name} action cannot encode the message: {exc}") from None
        except Exception as exc:
            log.exception("action raised an unexpected error", extra={"key": job.key})
            raise RetryableError(f"unexpected error in the {action.name} action: {type(exc).__name__}: {exc}") \
                from None

    def _failed(self, job: Job, destination: str, exc: DeliveryError, actions: ActionSet) -> None:
        error = redact(str(exc), actions.secrets)
        response = redact(exc.response_snippet, actions.secrets)
        kind = "retryable" if isinstance(exc, RetryableError) else "permanent"
        self.metrics.action_failures.labels(destination, kind).inc()
        due = None
        if isinstance(exc, RetryableError):
            due = self._policy(job, actions).next_due(job.attempts + 1, job.retry_window_start, self.clock(), self.rng,
                                                      exc.retry_after)
        if due is not None:
            log.warning("delivery failed, will retry", extra={
                "key": job.key, "destination": destination, "attempt": job.attempts + 1,
                "retry_in": round(due - self.clock(), 3), "error": error})
            self.store.retry_job(job.id, due, error, response)
            return
        reason = error if isinstance(exc, PermanentError) else f"gave up after {job.attempts + 1} attempts: {error}"
        log.error("delivery dead-lettered", extra={"key": job.key, "destination": destination, "error": reason})
        self.store.dead_job(job.id, reason, response)
        if job.order_key:
            self.notify()  # the next job of this key is no longer held back
        self.metrics.dead_letters.labels(destination).inc()

    def _policy(self, job: Job, actions: ActionSet) -> RetryPolicy:
        """delivery defaults, then the destination's `retry:`, then the rule's `retry:`."""
        try:
            destination = actions.get(job.action, job.destination).destination
        except PermanentError:
            destination = {}
        return self.policy.override(destination.get("retry")).override(job.retry)
