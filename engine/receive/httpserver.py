"""Serve the async intake (engine/receive/front.py, an RSGI app) with granian, embedded in this process's event loop.

Why granian: its HTTP/1.1 parser, connection handling and timeouts run in Rust threads outside the GIL, so the
Python side of an event POST is verify, parse, store and answer (issue 14: with waitress, a thread per request
waiting for the group commit and its parsing cost ~40 % of the CPU per event). Embedded (not its own worker
processes) so that `idhooks serve` keeps its one process per core, its supervisor (engine/processes.py), its
signals and its inherited listening socket.

`server.*` onto granian: `channel_timeout` is the header read timeout (an idle keep-alive connection or a
request line and headers that do not arrive in time is closed) and the body deadline (front.py);
`max_request_header_size` bounds the request head (431 above it); `connection_limit` the requests handled at
once (more wait in the listen backlog).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from typing import Any, Callable

import uvloop

from granian._granian import SocketHolder
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.server.embed import Server

from engine.config.settings import ServerConfig
from engine.receive.front import Front

log = logging.getLogger("idhooks.server")

DRAIN_TIMEOUT = 30.0
"""After SIGTERM, how long requests already being handled may take to get their answers."""
_MIN_BUFFER = 8192  # granian's (hyper's) smallest read buffer


class _OnSocket(Server):
    """granian's embedded server on a socket idhooks bound (or inherited from its supervisor)."""

    def __init__(self, sock: socket.socket, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._idhooks_socket = sock

    def _init_shared_socket(self) -> None:
        self._ssp = None
        self._shd = SocketHolder(self._idhooks_socket.fileno(), False, self.backlog)  # type: ignore[call-arg,assignment]
        self._sfd = self._idhooks_socket.fileno()  # type: ignore[assignment]


def granian_settings(settings: ServerConfig) -> dict[str, Any]:
    """granian's arguments for `server.*` (module docstring)."""
    return {"interface": Interfaces.RSGI, "http": HTTPModes.http1, "websockets": False,
            "backlog": 1024, "backpressure": settings.connection_limit,
            "http1_settings": HTTP1Settings(header_read_timeout=max(1, int(settings.channel_timeout * 1000)),
                                            keep_alive=True,
                                            max_buffer_size=max(_MIN_BUFFER, settings.max_request_header_size)),
            "log_enabled": False}


def serve(front: Front, sock: socket.socket, settings: ServerConfig, on_reload: Callable[[], object]) -> None:
    """Serve until SIGTERM or SIGINT, then let the requests in flight finish (at most DRAIN_TIMEOUT).

    The event loop is uvloop's (libuv's, in C): each event POST is a task that waits on granian's futures and
    the group commit's, and asyncio's own loop spent more of the main thread's time scheduling those than the
    intake spent verifying, parsing and storing (issue 14: -13 % CPU per event, +7-14 % events/s)."""
    uvloop.run(_serve(front, sock, settings, on_reload))


async def _serve(front: Front, sock: socket.socket, settings: ServerConfig, on_reload: Callable[[], object]) -> None:
    server = _OnSocket(sock, target=front, **granian_settings(settings))
    logging.getLogger("_granian").setLevel(logging.ERROR)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.signal_handler_interrupt)
    loop.add_signal_handler(signal.SIGHUP, lambda: threading.Thread(target=on_reload, name="idhooks-reload",
                                                                    daemon=True).start())
    await server.serve()
    deadline = loop.time() + DRAIN_TIMEOUT
    while front.in_flight and loop.time() < deadline:
        await asyncio.sleep(0.02)
    if front.in_flight:
        log.warning("requests still in flight at shutdown", extra={"requests": front.in_flight})
