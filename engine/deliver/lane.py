"""The delivery lane: one thread with an event loop that sends the jobs of every destination whose action can send
on it (`Action.sends_on_loop`: the HTTP actions, actions/httpresult.HttpExchangeAction), many at once, while the
delivery threads take the others (email, syslog, NATS, log).

Why: a delivery thread is held for as long as its target takes to answer, so `delivery.workers` threads were the
most sends in flight across all destinations, and a few slow targets held every thread. On the loop a send in
flight costs no thread: each destination gets all its `per_destination_concurrency` slots (8 targets answering in
200 ms: 63 deliveries/s against 20 from 4 threads), and a fast one its second slot too, which a second thread on
one fast target did not pay for (issue 14: +8 % delivered events/s under saturation). What it did not do is cut
the CPU per delivery in the server (same within the noise): each answer is still a wake-up and a turn on the GIL
beside intake, the processor and the group commit, although in a microbenchmark with no other threads the loop
spent ~120 µs per job against ~200 µs from a thread.

The lane is one more sender of the DeliveryWorker, with the same rules: it claims through the worker (hand-off
first, per-destination limits, leases), every attempt ends before the job's lease does (LANE_DEADLINE: the
exchange is cut and the connection aborted), outcomes are recorded with the worker's retry, dead-letter and
metrics code, and a stopping worker stops the lane between jobs. Store writes (a claim, an acknowledgement)
are made from the loop thread: they are short and take turns on the store's write lock like every other writer.
`delivery.lane: false` turns it off; the threads then send everything, as before.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Mapping

import uvloop

from actions.httpclient import HttpClient
from actions.httplane import LaneClient
from actions.httpresult import LANE_DEADLINE
from engine.errors import DeliveryError, RetryableError
from engine.store.base import Job

if TYPE_CHECKING:
    from engine.deliver.worker import DeliveryWorker

log = logging.getLogger("idhooks.worker")

_FIRST_INDEX = 1_000_000
"""Lane batches are numbered from here in the worker's table of sends in flight (threads use 0, 1, ...)."""


class DeliveryLane:
    """The worker's event-loop sender (module docstring). start() and stop() from the worker; notify() from any
    thread when jobs were created."""

    def __init__(self, worker: DeliveryWorker) -> None:
        self.worker = worker
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._leaving = False
        self.running = False  # from start() until the thread ends
        self._indexes = itertools.count(_FIRST_INDEX)
        self._lane_client: LaneClient | None = None

    def start(self) -> None:
        self.running = True
        self._thread = threading.Thread(target=self._run, name="delivery-lane", daemon=True)
        self._thread.start()

    def leave(self) -> None:
        """Stop claiming; the batches under way finish (the worker's stop() waits for the thread)."""
        self._leaving = True
        self.notify()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the lane to end; whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def notify(self) -> None:
        """New jobs, a freed slot or a stop: claim again now instead of at the next poll."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop has closed: the lane has ended
                pass

    # -- the loop thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            uvloop.run(self._main())
        except BaseException:  # a bug: say so, and let the threads take over below
            log.exception("the delivery lane stopped; the delivery threads send its destinations' jobs")
        finally:
            self.running = False
            self.worker.notify()

    async def _main(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        worker = self.worker
        batches: set[asyncio.Task[None]] = set()
        try:
            while not (worker._stopping.is_set() or self._leaving):
                self._wake.clear()
                try:
                    jobs = worker.claim(for_lane=True)
                except Exception:
                    log.exception("claiming delivery jobs failed, retrying", extra={"after": worker.poll_interval})
                    jobs = []
                if jobs:
                    for part in worker.spread(jobs):
                        task = asyncio.create_task(self._batch(part, next(self._indexes)))
                        batches.add(task)
                        task.add_done_callback(batches.discard)
                    continue
                try:
                    async with asyncio.timeout(worker.poll_interval):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            if batches:
                await asyncio.wait(batches)
        finally:
            self._loop = self._wake = None
            if self._lane_client is not None:
                self._lane_client.close()

    async def _batch(self, jobs: list[Job], index: int) -> None:
        """deliver_batch() of the worker, on the loop: attempts one after the other, each before its deadline."""
        from engine.deliver.worker import Batch  # the worker module imports this one

        batch = Batch(self.worker, jobs, index)
        try:
            for job in jobs:
                lease_end = batch.next_attempt()
                if lease_end is None:
                    break
                await self._attempt(job, lease_end, batch.delivered)
        finally:
            try:
                batch.end()
            finally:
                self.notify()  # the destination's slot is free: claim again

    async def _attempt(self, job: Job, lease_end: float, delivered: list[tuple[Job, float]]) -> None:
        """One attempt, ended (a retryable failure) before `lease_end` (time.monotonic()), then recorded."""
        worker = self.worker
        actions = worker.actions.get()
        expires = asyncio.get_running_loop().time() + (lease_end - time.monotonic())
        captured: Mapping[str, Any] | None = None
        error: DeliveryError | None = None
        token = LANE_DEADLINE.set(expires)
        try:
            action = actions.get(job.action, job.destination)
            send = action.send_async(worker.message(job, action), job.key, self._client(action.context.http))
            if action.ends_by_lane_deadline:  # it needs no scope of its own (its bookkeeping cost a tenth of a send)
                captured = await send
            else:
                async with asyncio.timeout_at(expires):
                    captured = await send
        except DeliveryError as exc:
            error = exc
        except TimeoutError:  # an action that does not end by LANE_DEADLINE itself, cut by the scope above
            error = RetryableError(f"deadline exceeded: the {job.action} action had no outcome before the job's "
                                   "lease ends")
        except Exception as exc:  # noqa: BLE001 - any other failure of the action: as worker.failure() says
            error = worker.failure(job, action, exc)
        finally:
            LANE_DEADLINE.reset(token)
        try:
            worker.record(job, delivered, actions, captured, error)
        except Exception:
            log.exception("could not record a delivery attempt", extra={"key": job.key})

    def _client(self, http: HttpClient) -> LaneClient:
        """This loop's connections for the running configuration's HTTP client. A reload brings a new client:
        the old one's idle connections are closed (those still carrying a request finish first)."""
        client = self._lane_client
        if client is None or client.client is not http:
            if client is not None:
                client.close()
            client = self._lane_client = LaneClient(http)
        return client
