"""waitress's connection class, minus a busy loop and a send per response that cost about a third of idhooks'
CPU per event (issue 14).

1. While a request's task runs, waitress marks its connection writable as soon as the answer is in the buffer.
   `poll()` then returns at once and `handle_write` cannot take the buffer's lock (the task thread holds it while
   it sends), so the main loop spins, holding the GIL that the task thread needs to finish. Under load, with 8
   request threads and the store's writer, that window is long: the loop went round ~14 times per event
   (measured: 76,000 POLLOUT wake-ups for 5,500 requests, where a bare Falcon app has ~1 per request).
2. The task thread sent the status line and headers, then the body, in two `send()` calls. Each call releases
   and takes back the GIL, and under contention every hand-over of the GIL is a few futex calls.

So a running task's output stays in the buffer while it is small (below SMALL_OUTPUT), and the connection is not
writable meanwhile. When the task ends, waitress pulls the trigger as it always does, and the main loop sends the
headers and body in one call (or, when a pipelined request is already waiting, the task thread sends it as
it ends, so the next task cannot hold it back). A larger output (a long listing, or a slow reader) is sent as it is written, and
the main loop drains it as before. Measured with bench/ingest.py (interleaved runs): main-thread CPU per event
went from ~180 to ~75 µs with (1), and (2) took another 10 % of CPU per event and halved the sendto and futex
calls.
"""

from __future__ import annotations

from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

SMALL_OUTPUT = 64 * 1024
"""Bytes of a running task's output that wait for the task's end, to go out in one send from the main loop."""


class TaskFlushedChannel(HTTPChannel):  # type: ignore[misc]
    """An HTTPChannel whose running task's small output is sent once, when the task ends."""

    def writable(self) -> bool:
        if self.requests and self.total_outbufs_len < SMALL_OUTPUT and not (
                self.will_close or self.close_when_flushed):
            return False
        return bool(super().writable())

    def service(self) -> None:
        super().service()
        if self.requests and self.total_outbufs_len and self.connected:
            # a pipelined request is next: its task would hold this finished answer back until it ends
            with self.outbuf_lock:
                self._flush_exception(self._flush_some, do_close=False)

    def handle_write(self) -> None:
        """waitress's, except that the main loop also sends under the buffer's lock when no task runs:
        waitress sends without it then, but here a task thread may be sending the answer it just finished
        (service above) while the next pipelined task ends, and two unlocked senders send a chunk twice."""
        self._flush_exception(self._flush_some_if_lockable if self.total_outbufs_len else None)
        if self.close_when_flushed and not self.total_outbufs_len:
            self.close_when_flushed = False
            self.will_close = True
        if self.will_close:
            self.handle_close()


def use_task_flushed_channels(server: Any) -> Any:
    """Make a server from `waitress.create_server` (one socket, or several) accept TaskFlushedChannel, and
    let a task's output below SMALL_OUTPUT wait in the buffer (waitress's `send_bytes`, which the task
    thread compares with the buffer before it sends; it is deprecated only as a create_server argument)."""
    for candidate in (server, *getattr(server, "map", {}).values()):
        if isinstance(candidate, BaseWSGIServer):
            candidate.channel_class = TaskFlushedChannel
            candidate.adj.send_bytes = SMALL_OUTPUT
    return server
