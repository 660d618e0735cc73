"""A total deadline for one delivery attempt: connect, send and the whole answer, however slowly it drips.

Socket timeouts bound each read, not the exchange: a target that sends its headers and then one byte every
2 s keeps a 10 s read timeout happy forever, holding a delivery slot and outliving the job's lease (another
process would then send the same job). So each attempt runs inside a `Deadline`: the sockets opened or used
for it are registered, and when the deadline passes one watchdog thread shuts them down, which ends any
blocked read or write at once. The attempt then fails as retryable ("deadline exceeded").

Deadlines nest: the delivery worker opens one bounded by the job's lease, an action one bounded by its
destination's `timeout`; the earlier end applies.
"""

from __future__ import annotations

import heapq
import itertools
import math
import socket
import threading
import time

_local = threading.local()


class Deadline:
    """Ends at `expires` (time.monotonic()); `watch()` sockets to have them shut down then."""

    def __init__(self, expires: float) -> None:
        self.expires = expires
        self.expired = False
        self.discarded = False  # its block ended first: the watchdog drops it when it comes up
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return max(self.expires - time.monotonic(), 0.0)

    @property
    def passed(self) -> bool:
        """The deadline has passed (whether or not the watchdog has run yet): a failing read then means
        the attempt was cut off, by this deadline or an enclosing one, which ends at the same time or earlier."""
        return self.expired or time.monotonic() >= self.expires

    def watch(self, sock: socket.socket | None) -> None:
        """Shut `sock` down when the deadline passes (at once if it already has)."""
        if sock is None:
            return
        with self._lock:
            if not self.expired:
                self._sockets.append(sock)
                return
        _shut(sock)

    def unwatch(self, sock: socket.socket) -> None:
        """Forget `sock` (it went back to its pool: another attempt may take it)."""
        with self._lock:
            if sock in self._sockets:
                self._sockets.remove(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    """Shut the socket down without closing it (its owner closes it): a blocked recv returns at once.
    socket.socket.shutdown, not SSLSocket's, which would tear down the TLS state under the reading thread."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


class _Watchdog:
    """One daemon thread expiring deadlines in time order (not a thread per attempt)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._counter = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._sleeping_until = -math.inf  # when the waiting watchdog wakes; -inf while it is not waiting
        self._discarded = 0  # discarded deadlines still on the heap

    def add(self, deadline: Deadline) -> None:
        with self._wake:
            heapq.heappush(self._heap, (deadline.expires, next(self._counter), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="delivery-deadlines", daemon=True)
                self._thread.start()
            if deadline.expires < self._sleeping_until:  # only an end before its wake-up needs the watchdog:
                self._sleeping_until = deadline.expires  # waking it for every attempt cost a thread switch
                self._wake.notify()                      # per send (each send's deadline is the earliest)

    def discard(self, deadline: Deadline) -> None:
        """Forget `deadline`: marked at once, taken off the heap when it comes up (rebuilding the heap per
        attempt cost more than the attempt's own bookkeeping), or when marked ones fill half a large heap."""
        with self._wake:
            deadline.discarded = True
            self._discarded += 1
            if self._discarded > 64 and self._discarded * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].discarded]
                heapq.heapify(self._heap)
                self._discarded = 0

    def _run(self) -> None:
        """Sleep until the earliest end (a deadline discarded meanwhile only makes it wake early, find a later
        one and sleep again), expire what is due."""
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    while self._heap and self._heap[0][2].discarded:  # ended before its time: nothing to do
                        heapq.heappop(self._heap)
                        self._discarded -= 1
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    self._sleeping_until = self._heap[0][0] if self._heap else math.inf
                    self._wake.wait(self._sleeping_until - time.monotonic() if self._heap else None)
                self._sleeping_until = -math.inf
                _, _, due = heapq.heappop(self._heap)
                if due.discarded:
                    self._discarded -= 1
                    continue
            due.expire()


_watchdog = _Watchdog()


def current() -> Deadline | None:
    """The innermost deadline of this thread's attempt, if any."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def deadline(seconds: float) -> _Block:
    """`with deadline(seconds) as limit:` runs the block under a deadline `seconds` from now, or the enclosing
    one's if that ends earlier."""
    return _Block(seconds)


class _Block:
    """The context of deadline(): a class, not a generator, since every delivery attempt enters two."""

    __slots__ = ("seconds", "inner")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> Deadline:
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        expires = time.monotonic() + max(self.seconds, 0.0)
        if stack:
            expires = min(expires, stack[-1].expires)
        self.inner = Deadline(expires)
        stack.append(self.inner)
        _watchdog.add(self.inner)
        return self.inner

    def __exit__(self, *exc: object) -> None:
        _local.stack.pop()
        _watchdog.discard(self.inner)


def watch(sock: socket.socket | None) -> None:
    """Register `sock` with every deadline of this thread (the innermost may end first, the outer ones
    still need it shut if the inner one is left without having fired)."""
    for entry in getattr(_local, "stack", []):
        entry.watch(sock)


def unwatch(sock: socket.socket) -> None:
    """Forget `sock` in every deadline of this thread, before it goes back to a pool of idle connections: a
    deadline of this attempt that passes later (the delivery's lease deadline outlives the exchange) must not
    shut it down under the attempt that takes it next."""
    for entry in getattr(_local, "stack", []):
        entry.unwatch(sock)
