"""The HTTP client every HTTP action sends with: keep-alive connections over the standard library's
http.client, with idhooks's outbound rules built in rather than bolted on.

Why not requests (which idhooks used before): one delivery through requests + urllib3 cost about 460 µs of
CPU on loopback, against about 75 µs through http.client (README, issue 14), and most of what requests adds
(cookie jars, redirects, environment proxies and netrc, content decoding, retries) is something a delivery
must not do anyway. What this client does, and nothing else:
- one request, never a redirect, never a retry (the delivery worker retries with backoff);
- connections are kept per origin (scheme, host, port, TLS settings, proxy) and reused; an idle one the
  peer has closed is noticed before reuse (a readable idle socket) and dropped;
- the peer a socket is actually connected to is checked against `blocked_networks` (link-local / cloud
  metadata, actions/safenet.py) before a byte is sent, so DNS rebinding after the resolve check cannot
  reach them; through a proxy the peer is the proxy, which must enforce its own policy;
- every socket is registered with the running attempt's deadline (actions/deadline.py), and each blocking
  call gets at most what is left of it: a slow-drip peer is cut off when the attempt's time is up;
- the answer is read up to `max_response_bytes` (a connection whose answer was cut short is closed, not
  reused); no `Accept-Encoding` is sent, so nothing is decompressed;
- TLS verifies certificates with the system CAs, a destination's `ca_file`, or not at all (`verify: false`);
- an `http://` proxy: plain-HTTP targets are requested through it by absolute URL, HTTPS targets through a
  CONNECT tunnel; a `user:password@` in the proxy URL becomes `Proxy-Authorization: Basic`.
Cookies are never stored or sent; no environment variable changes what a call does.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import ssl
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit

from actions.deadline import Deadline, watch
from actions.safenet import BLOCKED_NETWORKS, Networks, blocked
from engine import __version__
from engine.errors import PermanentError

USER_AGENT = f"idhooks/{__version__}"
MAX_IDLE_PER_ORIGIN = 32
"""Idle keep-alive connections kept per origin; more than the delivery threads that can use one at once."""
_READ_CHUNK = 65_536


class Headers(dict[str, str]):
    """An answer's headers, looked up without regard to case (`headers.get("retry-after")`). A header sent
    more than once keeps its values joined by ", " (RFC 9110 5.3)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        super().__init__()
        for name, value in items:
            key = name.lower()
            super().__setitem__(key, f"{super().__getitem__(key)}, {value}" if key in self else value)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name.lower() if isinstance(name, str) else name)

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


@dataclass(frozen=True)
class Answer:
    """A finished exchange: status, reason phrase, headers and at most `max_response_bytes` of the body."""

    status: int
    reason: str
    headers: Headers
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class SlowAnswerError(Exception):
    """The attempt's deadline passed while the answer was still arriving."""


@dataclass(frozen=True)
class _Origin:
    """Where a connection goes, and how: connections are reused only for the same origin."""

    scheme: str
    host: str
    port: int
    verify: bool | str
    proxy: str | None


class HttpClient:
    """Keep-alive HTTP/1.1 for the actions of one configuration. Thread-safe: each request takes an idle
    connection of its origin (or opens one) and gives it back when its answer was read whole.

    `blocked_networks`: peers never called (tests pass loopback to see the connect-time check work).
    `on_answer`: called with each answer (`idhooks destinations test` prints them)."""

    def __init__(self, blocked_networks: Networks = BLOCKED_NETWORKS,
                 on_answer: Callable[[Answer], None] | None = None) -> None:
        self.blocked_networks = blocked_networks
        self.on_answer = on_answer
        self._idle: dict[_Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._contexts: dict[bool | str, ssl.SSLContext] = {}
        weakref.finalize(self, _close_all, self._idle)  # a reload drops the old client: close its sockets too

    def request(self, method: str, url: str, *, headers: Mapping[str, str | bytes], body: bytes | None,
                connect_timeout: float, limit: Deadline, max_response_bytes: int, verify: bool | str = True,
                proxy: str | None = None) -> Answer:
        """Send one request and read its answer within `limit`. Raises OSError (and its subclasses: timeouts,
        refused connections, TLS failures), http.client.HTTPException for a malformed answer, SlowAnswerError,
        ValueError for a request that cannot be sent (an invalid header), PermanentError for a blocked peer."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an absolute http:// or https:// URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        origin = _Origin(parts.scheme, parts.hostname, port, verify, proxy)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        extra: dict[str, str] = {}
        if proxy is not None and parts.scheme == "http":
            target = f"http://{parts.netloc}{target}"  # a forward proxy takes the absolute URL
            extra = _proxy_headers(proxy)
        connection = self._connection(origin, connect_timeout, limit)
        try:
            connection.sock.settimeout(max(limit.remaining(), 0.001))
            connection.putrequest(method, target, skip_accept_encoding=True)
            if not any(name.lower() == "user-agent" for name in headers):
                connection.putheader("User-Agent", USER_AGENT)
            for name, value in {**extra, **headers}.items():
                connection.putheader(name, value)
            if body is not None or method not in ("GET", "HEAD"):
                connection.putheader("Content-Length", str(len(body or b"")))
            connection.endheaders(body)
            response = connection.getresponse()
            answer = Answer(response.status, response.reason, Headers(response.getheaders()),
                            _read_capped(response, max_response_bytes, limit))
        except BaseException:
            connection.close()
            raise
        if response.isclosed() and not response.will_close and not limit.passed:
            self._give_back(origin, connection)
        else:  # the peer closes it, or the answer was cut at the cap: never reuse a connection mid-answer
            connection.close()
        if self.on_answer is not None:
            self.on_answer(answer)
        return answer

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            _close_all(self._idle)

    def _connection(self, origin: _Origin, connect_timeout: float,
                    limit: Deadline) -> http.client.HTTPConnection:
        """An idle connection of `origin` that is still open, else a new one (connected now, so that the
        connect timeout and the peer check apply before anything is sent)."""
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                connection = idle.pop() if idle else None
            if connection is None:
                break
            if _still_open(connection.sock):
                watch(connection.sock)
                return connection
            connection.close()
        connection = self._new_connection(origin, min(connect_timeout, max(limit.remaining(), 0.001)))
        try:
            connection.connect()
        except BaseException:  # e.g. a failed TLS handshake: its TCP socket is still open
            connection.close()
            raise
        watch(connection.sock)  # the TLS socket: wrapping detached the TCP one the connector registered
        return connection

    def _new_connection(self, origin: _Origin, timeout: float) -> http.client.HTTPConnection:
        via = urlsplit(origin.proxy) if origin.proxy else None
        host, port = (via.hostname or "", via.port or 80) if via else (origin.host, origin.port)
        connection: http.client.HTTPConnection
        if origin.scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls(origin.verify))
            if via is not None:
                connection.set_tunnel(origin.host, origin.port, headers=_proxy_headers(str(origin.proxy)))
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connection._create_connection = self._connector(checked=via is None)  # type: ignore[attr-defined]
        return connection

    def _connector(self, checked: bool) -> Callable[..., socket.socket]:
        """socket.create_connection, then the peer check (direct connections only) and the deadline."""
        networks = self.blocked_networks

        def create(address: tuple[str, int], timeout: float, source_address: Any = None) -> socket.socket:
            sock = socket.create_connection(address, timeout, source_address)
            peer = blocked(sock.getpeername()[0], networks) if checked else None
            if peer is not None:
                sock.close()
                raise PermanentError(f"refused: {address[0]!r} connected to {peer}, a link-local/metadata address "
                                     "idhooks never calls")
            watch(sock)
            return sock

        return create

    def _tls(self, verify: bool | str) -> ssl.SSLContext:
        """One TLS context per verify setting (loading the CA store costs milliseconds, so it is done once)."""
        with self._lock:
            context = self._contexts.get(verify)
            if context is None:
                if verify is False:
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                else:
                    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
                self._contexts[verify] = context
            return context

    def _give_back(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(connection)
                return
        connection.close()


def _read_capped(response: http.client.HTTPResponse, limit: int, until: Deadline) -> bytes:
    """At most `limit` bytes of the body (chunked or not), so a huge or endless answer cannot exhaust memory;
    SlowAnswerError when `until` passes while it arrives (its watchdog also cuts a read that is blocked)."""
    chunks, size = [], 0
    while size < limit:
        if until.passed:
            raise SlowAnswerError()
        chunk = response.read(min(_READ_CHUNK, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if until.passed and not response.isclosed():
        raise SlowAnswerError()
    return b"".join(chunks)


def _close_all(idle: dict[_Origin, list[http.client.HTTPConnection]]) -> None:
    for connections in idle.values():
        for connection in connections:
            connection.close()
    idle.clear()


def _still_open(sock: socket.socket | None) -> bool:
    """An idle keep-alive socket is fine while nothing can be read from it: readable means the peer closed
    it (or sent something unasked), and it must not carry another request."""
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


def _proxy_headers(proxy: str) -> dict[str, str]:
    """Proxy-Authorization from the proxy URL's user:password, if it has one."""
    parts = urlsplit(proxy)
    if parts.username is None:
        return {}
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}
