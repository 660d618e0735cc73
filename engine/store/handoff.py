"""New events handed from intake to the processor, and new jobs from the processor to the delivery worker, of
the same process, already leased to the one that takes them (issue 14).

Without it every event is written three times: stored by intake, leased by the processor's claim (an UPDATE
that returns the whole row, body included, to be decoded again) and recorded as processed. A store that
supports the hand-off (SQLite) stores a new pending event already leased to the running processor, for the
processor's usual lease, and after the commit puts it here; the processor takes it from memory instead of
claiming it.

Nothing is lost by it: a handed event is a stored, leased event like a claimed one. If the process dies, its
lease expires (or `take_over_leases` frees it at the next start) and a claim finds it. The processor still
claims from the store, for everything else (events of other processes, retries, a backlog from before the
start). Order is kept: when the hand-off is full it closes, so the events that follow are stored unleased; the
processor first takes what was handed, then opens it again and claims, oldest first, what was stored meanwhile.

Jobs (JobHandoff) follow the same pattern one stage later: without it each job is written three times too
(queued by the processor, leased by a delivery claim that returns and decodes the row, acknowledged). Only
jobs that any worker could send at once are handed: not an ordered job (`ordered_by:`, which waits for the
earlier ones of its key) nor one that fills in captured values.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from engine.store.base import Job, NewJob, StoredEvent


class _Bounded:
    """What both hand-offs share: at most `limit` waiting; once full it closes (hands nothing more, so what
    follows is stored unleased and claimed in order) until the taker has drained it and reopens it."""

    def __init__(self, owner: str, lease: float, limit: int) -> None:
        self.owner, self.lease, self.limit = owner, lease, limit
        self._lock = threading.Lock()
        self._open = True
        self.overflowed = False  # set when it closed: the taker must claim what was stored meanwhile

    def _waiting(self) -> int:
        raise NotImplementedError

    def admits(self, count: int) -> bool:
        """Whether the store may lease the next `count` new items to `owner` and put them here."""
        with self._lock:
            if self._open and self._waiting() + count > self.limit:
                self._open, self.overflowed = False, True
            return self._open

    def reopen(self) -> None:
        """Hand over again (the taker is about to claim whatever was stored unleased meanwhile)."""
        with self._lock:
            self._open, self.overflowed = True, False


class EventHandoff(_Bounded):
    """A bounded queue of stored events leased to `owner`, in commit order."""

    def __init__(self, owner: str, lease: float, limit: int = 4096,
                 on_put: Callable[[], None] = lambda: None) -> None:
        super().__init__(owner, lease, limit)
        self.on_put = on_put
        self._events: deque[StoredEvent] = deque()

    def _waiting(self) -> int:
        return len(self._events)

    def put(self, events: list[StoredEvent]) -> None:
        """Events the store committed leased to `owner` (after admits() allowed them)."""
        if events:
            with self._lock:
                self._events.extend(events)
            self.on_put()

    def take(self, limit: int, now: float) -> list[StoredEvent]:
        """Up to `limit` handed events, oldest first. One whose lease is half gone is left to expire and be
        claimed, so that an event is never evaluated from here while a claim could also lease it."""
        taken: list[StoredEvent] = []
        with self._lock:
            while self._events and len(taken) < limit:
                event = self._events.popleft()
                if event.received_at + self.lease / 2 > now:
                    taken.append(event)
        return taken

    def jtis(self) -> list[str]:
        """The events still waiting here (their leases are given back when the processor stops)."""
        with self._lock:
            return [event.jti for event in self._events]


def handed(job: NewJob) -> bool:
    """Whether a new job may be handed to the delivery worker instead of waiting for a claim: it is due at once
    and no other job has to go first (not ordered) or leave it values (no captured placeholders)."""
    return not job.ordered_by and not job.captured_nonce


class JobHandoff(_Bounded):
    """A bounded queue of stored jobs leased to `owner` (this process's delivery worker) until their
    `lease_until`, per destination, each in commit order."""

    def __init__(self, owner: str, lease: float, limit: int = 4096) -> None:
        super().__init__(owner, lease, limit)
        self._jobs: dict[str, deque[Job]] = {}
        self._count = 0

    def _waiting(self) -> int:
        return self._count

    def put(self, jobs: list[Job]) -> None:
        """Jobs the store committed leased to `owner` (after admits() allowed them)."""
        with self._lock:
            for job in jobs:
                self._jobs.setdefault(job.destination, deque()).append(job)
            self._count += len(jobs)

    def take(self, skip: frozenset[str], limit: int, now: float) -> list[Job]:
        """Up to `limit` handed jobs of one destination not in `skip`: the one whose next job has waited
        longest. A job whose lease is half gone is left to expire and be claimed, so that it is never sent
        from here while a claim could also lease it."""
        with self._lock:
            waiting = [(queue[0].created_at, name) for name, queue in self._jobs.items() if name not in skip and queue]
            if not waiting:
                return []
            queue = self._jobs[min(waiting)[1]]
            taken: list[Job] = []
            while queue and len(taken) < limit:
                job = queue.popleft()
                self._count -= 1
                if (job.created_at + job.lease_until) / 2 > now:
                    taken.append(job)
            return taken

    def drained(self) -> bool:
        with self._lock:
            return self._count == 0

    def ids(self) -> list[str]:
        """The jobs still waiting here (their leases are given back when the worker stops)."""
        with self._lock:
            return [job.id for queue in self._jobs.values() for job in queue]
