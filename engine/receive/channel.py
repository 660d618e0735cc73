"""waitress's connection class, minus a busy loop that cost a quarter of idhooks' CPU per event (issue 14).

While a request's task runs, the task thread writes the response itself (`write_soon` sends at once). Between
the moment it puts bytes in the connection's buffer and the moment its `send()` returns and it takes the GIL
back, waitress's main loop sees the buffer non-empty, marks the socket writable, `poll()` returns at once, and
`handle_write` cannot take the buffer's lock: the loop spins, holding the GIL the task thread needs to finish.
Under load, 8 request threads and the store's writer make that window long, and the loop went round ~14 times
per event (measured: 76,000 POLLOUT wake-ups for 5,500 requests; a bare Falcon app: ~1 per request).

So a connection whose task is running is not writable while what its buffer holds is small: the task thread
sends it (or the rest, on its next write), and waitress pulls the trigger when the task ends, after which the
main loop flushes whatever is left as before. Large buffers (a slow reader of a long answer) keep waitress's
behaviour, where the main loop drains them while the task waits below its high watermark.
"""

from __future__ import annotations

from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

SMALL_OUTPUT = 64 * 1024
"""Bytes a running task's connection may hold unsent without the main loop helping to send them."""


class TaskFlushedChannel(HTTPChannel):  # type: ignore[misc]
    """An HTTPChannel that leaves a running task's small output to the task thread."""

    def writable(self) -> bool:
        if self.requests and self.total_outbufs_len < SMALL_OUTPUT and not (
                self.will_close or self.close_when_flushed):
            return False
        return bool(super().writable())


def use_task_flushed_channels(server: Any) -> Any:
    """Make a server from `waitress.create_server` (one socket, or several) accept TaskFlushedChannel."""
    for candidate in (server, *getattr(server, "map", {}).values()):
        if isinstance(candidate, BaseWSGIServer):
            candidate.channel_class = TaskFlushedChannel
    return server
