"""HTTP requests on an event loop, for the delivery lane (engine/deliver/lane.py): the same requests, answers
and outbound rules as the blocking client in actions/httpclient.py, without a thread per send.

Why (issue 14): a blocking send gives the GIL away at each system call and must win it back from the other
threads (intake, processor, group commit), a thread switch or more per call. One event-loop thread waits for
every connection at once: against a loopback sink a blocking send cost ~200 µs of CPU with idhooks's own work,
the same work on the loop ~120 µs.

What is the same as the blocking client, because it is the same code (`HttpClient.head`, `_Answer`):
the request line and headers and what they refuse, the bounded answer (head, header lines, `max_response_bytes`),
the parser's complaint instead of the peer's bytes, interim answers skipped, a connection reused only after a
whole keep-alive answer with nothing after it. What this module does the same way, on the loop:
- connecting: the host is resolved and each address tried in turn within the connect timeout, and the peer the
  socket is connected to is checked against `blocked_networks` before a byte is sent (through a proxy the peer
  is the proxy); TLS starts only after that check, with the client's TLS context for the destination's `verify`;
- proxies: a plain-HTTP target through an `http://` proxy by absolute URL, an HTTPS one through CONNECT;
- the deadline: the caller gives one (the loop's time); when it passes, the connection is aborted and never
  reused, however slowly the peer was dripping;
- an idle connection that the peer closed, or on which it sent anything unasked, is never reused.
Connections are kept per origin for the loop that opened them (one lane per process), at most
MAX_IDLE_PER_ORIGIN idle.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any
from urllib.parse import urlsplit

from actions.httpclient import (MAX_IDLE_PER_ORIGIN, Answer, ClosedEarlyError, HttpClient, _Answer, _Origin,
                                connect_request, tunnel_opened)
from actions.safenet import blocked
from engine.errors import PermanentError


class DeadlinePassedError(TimeoutError):
    """A lane request's deadline passed (LaneClient.request), as opposed to a connect timeout of its own."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: feeds what arrives to the answer being read, or marks the connection spent
    when the peer sends anything while no request is waiting for it (or closes it)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()  # made by the loop's create_connection: one lookup per connection
        self.transport: asyncio.Transport | None = None
        self.answer: _Answer | None = None
        self.waiter: asyncio.Future[tuple[Answer, bool]] | None = None
        self.spent = False  # closed, or it carried bytes nobody asked for: never reused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self, cap: int) -> asyncio.Future[tuple[Answer, bool]]:
        """Expect the answer to a request about to be written; the future resolves with (answer, reusable)."""
        self.answer = _Answer(cap)
        self.waiter = self.loop.create_future()
        return self.waiter

    def data_received(self, data: bytes) -> None:
        answer, waiter = self.answer, self.waiter
        if answer is None or waiter is None or waiter.done():
            self.abort()  # unasked bytes on an idle connection (or after the answer): it cannot carry another
            return
        try:
            answer.feed(data)
        except Exception as exc:  # noqa: BLE001 - BadAnswerError (a bound) and the parser's own, to the request
            self._fail(exc)
            return
        if answer.complete or answer.size >= answer.cap:
            self.answer = None
            result, reusable = answer.result()
            if not reusable:
                self.abort()
            waiter.set_result((result, reusable))

    def eof_received(self) -> bool:
        answer, waiter = self.answer, self.waiter
        if answer is not None and waiter is not None and not waiter.done():
            self.answer = None
            if answer.head_done and not answer.framed and answer.status not in (204, 304):
                waiter.set_result((answer.result()[0], False))  # a body delimited by the end of the connection
            else:
                waiter.set_exception(ClosedEarlyError("the connection closed before the answer was complete"))
        self.abort()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.spent = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc if isinstance(exc, OSError) else
                                 ClosedEarlyError("the connection closed before the answer was complete"))

    def _fail(self, exc: BaseException) -> None:
        self.answer = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.abort()

    def expire(self) -> None:
        """The request's deadline passed before its answer was complete: TimeoutError to the request, and the
        connection aborted (LaneClient.request's timer)."""
        self._fail(DeadlinePassedError("the deadline passed before the answer was complete"))

    def abort(self) -> None:
        """Close at once and never reuse (the answer was cut, refused, or came unasked)."""
        self.spent = True
        if self.transport is not None:
            self.transport.abort()


class LaneClient:
    """The delivery lane's requests for one HttpClient (one configuration): its TLS contexts, blocked networks
    and `on_answer` hook, with connections of its own that belong to the running loop. Use from that loop only."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self._idle: dict[_Origin, list[_Connection]] = {}

    async def request(self, method: str, url: str, *, headers: Any, body: bytes | None, connect_timeout: float,
                      max_response_bytes: int, deadline: float, verify: bool | str = True,
                      proxy: str | None = None) -> Answer:
        """Send one request and read its answer by `deadline` (the loop's time): when it passes, the connection is
        aborted and TimeoutError raised. Raises what HttpClient.request raises otherwise.

        The deadline is one timer on the loop, not `asyncio.timeout()`: that scope's bookkeeping (the current task,
        a handle rescheduled on entry and exit) was a sixth of the lane's own time per send (issue 14)."""
        origin, head = self.client.head(method, url, headers, body, verify, proxy)
        connection = self._idle_connection(origin)
        if connection is None:  # a new connection is rare: the scope's cost does not matter here
            try:
                async with asyncio.timeout_at(deadline) as scope:
                    connection = await self._connect(origin, connect_timeout)
            except TimeoutError:
                if scope.expired():
                    raise DeadlinePassedError("the deadline passed while connecting") from None
                raise
        transport = connection.transport
        assert transport is not None
        waiter = connection.start(max_response_bytes)
        timer = connection.loop.call_at(deadline, connection.expire)
        try:
            transport.write(head + body if body else head)
            answer, reusable = await waiter
        except BaseException:
            connection.abort()
            raise
        finally:
            timer.cancel()
        if reusable and not connection.spent:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(connection)
            else:
                transport.close()
        if self.client.on_answer is not None:
            self.client.on_answer(answer)
        return answer

    def close(self) -> None:
        """Close every idle connection (a reload replaced the configuration, or the lane stops)."""
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()

    def _idle_connection(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if not connection.spent and connection.transport is not None and not connection.transport.is_closing():
                return connection
        return None

    async def _connect(self, origin: _Origin, timeout: float) -> _Connection:
        """A new connection: resolved, connected and checked within `timeout`, then TLS (through a CONNECT
        tunnel when a proxy carries an https:// call)."""
        via = urlsplit(origin.proxy) if origin.proxy else None
        host, port = (via.hostname or "", via.port or 80) if via else (origin.host, origin.port)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            sock = await _connected(loop, host, port)
        try:
            peer = blocked(sock.getpeername()[0], self.client.blocked_networks) if via is None else None
            if peer is not None:
                raise PermanentError(f"refused: {host!r} connected to {peer}, a link-local/metadata address "
                                     "idhooks never calls")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = None
            if origin.scheme == "https":
                if via is not None:
                    await _tunnel(loop, sock, origin, str(origin.proxy))
                tls = self.client._tls(origin.verify)
            _, connection = await loop.create_connection(
                _Connection, sock=sock, ssl=tls, server_hostname=origin.host if tls is not None else None)
        except BaseException:
            sock.close()
            raise
        return connection


async def _connected(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A non-blocking socket connected to the first address of `host` that accepts (socket.create_connection's
    order); the last error when none does."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"cannot resolve {host!r}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:  # the loop words it "Connect call failed (address)": say what failed, as a
            sock.close()        # blocking connect would ("Connection refused")
            error = type(exc)(exc.errno, os.strerror(exc.errno)) if exc.errno else exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error


async def _tunnel(loop: asyncio.AbstractEventLoop, sock: socket.socket, origin: _Origin, proxy: str) -> None:
    """CONNECT through the proxy to the origin (actions/httpclient._tunnel, on the loop)."""
    await loop.sock_sendall(sock, connect_request(origin, proxy))
    head = b""
    while not tunnel_opened(head):
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise ClosedEarlyError("the proxy closed the connection before opening the tunnel")
        head += chunk
