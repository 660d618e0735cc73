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
wakes at once, and otherwise poll for retries that became due: one claim every `poll_interval` seconds among
all the threads, made by whichever is idle.

With `delivery.lane` (the default) the jobs of actions that can send on an event loop (the HTTP ones) go to the lane
(engine/deliver/lane.py): one more sender, in one thread, that claims through this worker and records through it,
and fills every slot of a destination, since its sends in flight cost no thread. The threads send the rest.
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
from actions.base import Action
from actions.deadline import deadline
from engine.deliver.backoff import RetryPolicy
from engine.deliver.captures import fill
from engine.deliver.lane import DeliveryLane
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
        self._next_poll = 0.0  # time.monotonic() from which a thread's poll timer may claim again (_poll_turn)
        self._lane: DeliveryLane | None = None  # while started with delivery.lane (engine/deliver/lane.py)
        self._leaving: list[DeliveryLane] = []  # lanes turned off by a reload, or still running after stop()

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start `delivery.workers` threads, and take new jobs from the processor in memory where the store
        supports it (engine/store/handoff.py)."""
        self._stopping.clear()
        handoff = JobHandoff(self.owner, self.delivery.lease)
        self._handoff = handoff if self.store.hand_over_new_jobs(handoff) else None
        self._next_store_claim = 0.0
        if self.delivery.lane:  # first: a thread started before it would claim the lane's destinations too
            self._start_lane()
        self._start_missing_threads()

    def _start_lane(self) -> None:
        self._lane = DeliveryLane(self)
        self._lane.start()

    def _running_lane(self) -> DeliveryLane | None:
        """The lane, while it runs: should it ever end by itself (a bug), the threads take its destinations."""
        lane = self._lane
        return lane if lane is not None and lane.running else None

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
                if delivery.lane and self._lane is None:
                    self._start_lane()
                elif not delivery.lane and self._lane is not None:
                    self._lane.leave()  # its batches under way finish; the threads take its destinations now
                    self._leaving.append(self._lane)
                    self._lane = None
        self.notify()  # idle threads above the new count wake up and exit

    def thread_count(self) -> int:
        """Delivery threads running now."""
        return sum(thread.is_alive() for thread in self._threads.values())

    def notify(self, jobs: int | None = None, destinations: Collection[str] | None = None) -> None:
        """New jobs exist: wake idle workers now instead of at the next poll; as many as there are new jobs
        when that is known (every woken worker runs a claim, and a claim that finds nothing is a write that
        other writers wait for), else all of them. Given the jobs' `destinations`, none for a destination whose
        sender will take them when its batch ends (it claims again before it ever sleeps)."""
        lane = self._running_lane()
        on_loop = self.actions.get().on_loop if lane is not None else frozenset()
        if destinations is not None:
            waiting = {d for d in destinations if not self._full(d, d in on_loop)}
            if lane is not None:
                if not on_loop.isdisjoint(waiting):
                    lane.notify()
                waiting -= on_loop
                if not waiting:
                    return  # the lane sends them, or their senders take them when their batches end
            if jobs is not None:
                jobs = min(jobs, len(waiting))
        elif lane is not None:
            lane.notify()
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
        lanes = [lane for lane in (self._lane, *self._leaving) if lane is not None]
        self._leaving = [lane for lane in lanes if not lane.join(max(deadline - time.monotonic(), 0))]
        self._lane = None
        if handoff is not None:  # handed but not sent: claimable at once by whoever runs next
            try:
                self.store.release_jobs(self.owner, handoff.ids())
            except Exception:  # noqa: BLE001 - they stay leased and are claimed once the lease ends
                log.warning("could not give back the leases of handed jobs; they are sent after the lease ends")
        return not self._threads and not self._leaving

    def run_once(self, limit: int = 100) -> int:
        """Deliver, one after the other in this thread, what is due now (at most `limit` attempts); how
        many attempts were made. For tests (with an injected clock) and one-shot commands."""
        attempts = 0
        while attempts < limit:
            jobs = self.claim()
            if not jobs:
                break
            attempts += self._deliver_batch(jobs)
        return attempts

    # -- claiming --------------------------------------------------------------------------------
    def _loop(self, index: int) -> None:
        woken = True  # a new thread claims at once; after that, when woken, or when its poll is the threads' turn
        while not self._stopping.is_set() and index < self.delivery.workers:
            with self._wake:
                generation = self._generation
            jobs: list[Job] = []
            if woken or self._poll_turn():
                try:
                    jobs = self.claim()
                except Exception:
                    log.exception("claiming delivery jobs failed, retrying", extra={"after": self.poll_interval})
            if jobs:
                if not woken:  # a poll found due jobs (retries): an idle thread may take the next ones meanwhile
                    self._wake_one()
                self._deliver_batch(jobs, index)
                woken = True  # claim again before sleeping
                continue
            with self._wake:
                woken = self._generation != generation or self._stopping.is_set() or \
                    self._wake.wait(self.poll_interval)

    def _poll_turn(self) -> bool:
        """Whether a thread whose poll timer ran out claims now: one such claim per `poll_interval` among all the
        threads, not one per thread. Each claim that finds nothing is a store write, and with the lane running it
        walks past the lane's pending jobs: 3.6 ms holding SQLite's write lock with 10,000 of them queued for a
        slow target, which four threads polling four times a second made 6 % of a core (issue 14)."""
        with self._claim_lock:
            now = time.monotonic()
            if now < self._next_poll:
                return False
            self._next_poll = now + self.poll_interval
            return True

    def claim(self, for_lane: bool = False) -> list[Job]:
        """Jobs of one destination below its concurrency limit (one slot in flight): handed ones (already
        leased to this worker), else claimed from the store: one job, and when that job had to wait (a backlog)
        up to BATCH-1 more of the same destination, so a busy queue costs one claim transaction per batch
        instead of one per job. The store is claimed from whenever nothing handed is waiting, and at least once
        a poll interval (retries that became due, jobs stored unleased while the hand-off was full).

        While the lane runs (engine/deliver/lane.py), it takes the destinations whose action sends on its loop
        (`for_lane`) and the threads take the others."""
        with self._claim_lock:
            now = self.clock()
            actions = self.actions.get()
            full = frozenset(d for d in list(self._in_flight) if self._full(d, for_lane))
            if for_lane:
                full |= actions.destination_names() - actions.on_loop
            elif self._running_lane() is not None:
                full |= actions.on_loop
            if full and full >= actions.destination_names():
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
                others = actions.destination_names() - {destination}
                jobs += self.store.claim_jobs(self.owner, self.delivery.lease, BATCH - 1, now,
                                              skip_destinations=frozenset(others))
            self._in_flight[destination] += 1
        return jobs

    def spread(self, jobs: list[Job]) -> list[list[Job]]:
        """A batch the lane claimed, split over its destination's free slots (each further part takes one), so
        that a slow target's backlog is sent `per_destination_concurrency` at a time, not one job after the other.
        Only jobs that may go in any order are claimed together (an ordered job only once those before it ended)."""
        destination = jobs[0].destination
        with self._claim_lock:
            free = self.delivery.per_destination_concurrency - self._in_flight[destination]  # the claim took one
            parts = min(len(jobs), 1 + max(free, 0))
            self._in_flight[destination] += parts - 1
        return [jobs[start::parts] for start in range(parts)]

    def _full(self, destination: str, for_lane: bool = False) -> bool:
        """No other worker should claim for `destination` now: it is at its limit, or its senders get their
        answers quickly enough to need no help. The lane fills every slot: its sends in flight share one thread."""
        senders = self._in_flight[destination]
        return senders >= self.delivery.per_destination_concurrency or \
            (senders > 0 and not for_lane and not self._slow(destination))

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
        batch = Batch(self, jobs, index)
        try:
            for job in jobs:
                lease_end = batch.next_attempt()
                if lease_end is None:
                    break
                self._attempt(job, lease_end, batch.delivered)
        finally:
            batch.end()
        return batch.attempted

    def release(self, destination: str) -> None:
        """Free the destination's slot; when it was full, wake one idle worker for its waiting jobs (the lane's
        destinations: the lane, which claims again when any of its batches ends)."""
        with self._claim_lock:
            was_full = self._in_flight[destination] >= self.delivery.per_destination_concurrency
            self._in_flight[destination] -= 1
            if self._in_flight[destination] <= 0:
                del self._in_flight[destination]
        if was_full and not (self._running_lane() is not None and destination in self.actions.get().on_loop):
            self._wake_one()

    def _wake_one(self) -> None:
        """Wake one idle thread to claim (a thread about to sleep sees the new generation and claims instead)."""
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

    def acknowledge(self, delivered: list[tuple[Job, float]]) -> None:
        """Record delivered jobs (job, when its send succeeded) as done in one store write, then count them."""
        if not delivered:
            return
        try:
            self.store.ack_jobs([job.id for job, _ in delivered], self.clock())
        except Exception:  # they stay leased: sent again once the lease ends (at least once)
            log.exception("could not record delivered jobs", extra={"keys": [job.key for job, _ in delivered]})
            return
        metrics = self.metrics
        counts: dict[str, int] = {}
        for job, at in delivered:
            destination = job.destination or job.action
            counts[destination] = counts.get(destination, 0) + 1
            if job.received_at is not None:
                metrics.child(metrics.delivery_latency, destination).observe(max(at - job.received_at, 0.0))
        for destination, count in counts.items():  # one increment per destination (a batch has one), not per job
            metrics.child(metrics.action_successes, destination).inc(count)

    # -- one attempt -----------------------------------------------------------------------------
    def deliver(self, job: Job, delivered: list[tuple[Job, float]]) -> None:
        """One attempt: on success the job joins `delivered` (acknowledged with its batch), or is acknowledged
        at once when it has an order key (the next job of the key waits for it); on failure schedule a retry or
        dead-letter it."""
        actions = self.actions.get()
        try:
            captured = self._send(job, actions)
        except DeliveryError as exc:
            self.record(job, delivered, actions, error=exc)
            return
        self.record(job, delivered, actions, captured)

    def record(self, job: Job, delivered: list[tuple[Job, float]], actions: ActionSet,
               captured: Mapping[str, Any] | None = None, error: DeliveryError | None = None) -> None:
        """Count an attempt and record its outcome (deliver(); the lane's attempts end here too)."""
        destination = job.destination or job.action
        self.metrics.child(self.metrics.action_attempts, destination).inc()
        if error is not None:
            self._failed(job, destination, error, actions)
            return
        now = self.clock()
        if captured and job.capture_ref:  # before the ack: the next job of the key may start right after it
            self.store.capture_set(job.capture_ref, captured, now)
        if not job.order_key:
            delivered.append((job, now))
            return
        self.acknowledge([(job, now)])
        self.notify()  # the next job of this key is claimable now

    def _send(self, job: Job, actions: ActionSet) -> Mapping[str, Any] | None:
        """Send with the job's action (its `captured` values filled in first); what it captured from the
        answer. An unexpected exception from a plugin counts as a retryable attempt (backoff, then the
        dead-letter list) instead of leaving the job to loop on lease expiry, except a UnicodeError (a lone
        surrogate in event data), which no retry can fix: permanent."""
        action = actions.get(job.action, job.destination)
        try:
            return action.send(self.message(job, action), job.key)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a DeliveryError
            raise self.failure(job, action, exc) from None

    def message(self, job: Job, action: Action) -> Mapping[str, Any]:
        """The rendered action the job carries, with its `captured` values filled in."""
        if job.captured_nonce:
            return fill(job, self.store.captures(job.capture_ref), action.rule_fields)
        return job.message

    @staticmethod
    def failure(job: Job, action: Action, exc: Exception) -> DeliveryError:
        """What an exception from a send means (_send)."""
        if isinstance(exc, DeliveryError):
            return exc
        if isinstance(exc, UnicodeError):  # text from the event that no channel can encode: retrying cannot help
            return PermanentError(f"the {action.name} action cannot encode the message: {exc}")
        log.error("action raised an unexpected error", exc_info=exc, extra={"key": job.key})
        return RetryableError(f"unexpected error in the {action.name} action: {type(exc).__name__}: {exc}")

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


class Batch:
    """The bookkeeping of one claimed batch, for a delivery thread and the lane alike: its slot and lease, the
    jobs delivered so far (acknowledged together by end()), and whether another attempt may start."""

    def __init__(self, worker: DeliveryWorker, jobs: list[Job], index: int) -> None:
        self.worker, self.index = worker, index
        started = time.monotonic()
        self.lease = worker.delivery.lease
        # a claimed batch's lease began with its claim; a handed one's when it was queued
        self.ends = started + self.lease
        handed_until = min((job.lease_until for job in jobs if job.lease_until), default=0.0)
        if handed_until:
            self.ends = min(self.ends, started + handed_until - worker.clock())
        self.lease_end = self.ends - lease_margin(self.lease)
        self.attempted = 0
        self.delivered: list[tuple[Job, float]] = []
        self.destination = jobs[0].destination
        self._sending = worker._sending.setdefault(self.destination, {})

    def next_attempt(self) -> float | None:
        """time.monotonic() by which the next attempt must end, or None to stop here (shutdown, or half the
        lease used up: the rest stay leased and are claimed again when it expires)."""
        now = time.monotonic()
        if self.attempted and (self.worker._stopping.is_set() or now > self.ends - self.lease / 2):
            return None
        self._sending[self.index] = now
        self.attempted += 1
        return self.lease_end

    def end(self) -> None:
        """Acknowledge what was delivered and free the destination's slot."""
        self._sending.pop(self.index, None)
        self.worker.acknowledge(self.delivered)
        self.worker.release(self.destination)
