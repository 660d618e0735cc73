"""The HTTP client every HTTP action sends with: keep-alive HTTP/1.1 connections, requests written here and
answers parsed by llhttp (Node.js's parser, through httptools), with idhooks's outbound rules built in.

Why its own client (issue 14): one delivery through requests + urllib3 cost about 460 µs of CPU on loopback,
through http.client about 100 µs, and this way about 20 µs; the rest of a delivery is then what idhooks itself
does. What requests added (cookie jars, redirects, environment proxies and netrc, content decoding, retries) is
what a delivery must not do anyway. What this client does, and nothing else:
- one request, never a redirect, never a retry (the delivery worker retries with backoff);
- connections are kept per origin (scheme, host, port, TLS settings, proxy) and reused; an idle one the peer
  has closed is noticed before reuse (a readable idle socket) and dropped;
- the peer a socket is actually connected to is checked against `blocked_networks` (link-local / cloud
  metadata, actions/safenet.py) before a byte is sent, so DNS rebinding after the resolve check cannot reach
  them; through a proxy the peer is the proxy, which must enforce its own policy;
- every socket (the TLS one too) is registered with the running attempt's deadline (actions/deadline.py); once
  connected (within the connect timeout), sends and reads block without a timeout of their own, and the
  deadline's watchdog shuts the socket down when the attempt's time is up, however slowly a peer drips (a
  socket timeout per call would bound each call, not the exchange, and costs a poll() per call);
- the answer is bounded: its head to 64 KiB and 100 header lines, its body to `max_response_bytes` (a
  connection whose answer was cut short is closed, not reused); no `Accept-Encoding` is sent, so nothing is
  decompressed; an answer that is not HTTP is an error that names the parser's complaint, never the peer's bytes;
- a request header name must be an HTTP token and a value may hold no CR, LF or NUL (event text is folded to
  one line before it gets here; this is the last guard);
- TLS verifies certificates with the system CAs, a destination's `ca_file`, or not at all (`verify: false`);
- an `http://` proxy: plain-HTTP targets are requested through it by absolute URL, HTTPS targets through a
  CONNECT tunnel; a `user:password@` in the proxy URL becomes `Proxy-Authorization: Basic`.
Cookies are never stored or sent; no environment variable changes what a call does.
"""

from __future__ import annotations

import base64
import re
import select
import socket
import ssl
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple
from urllib.parse import unquote, urlsplit

import httptools

from actions.deadline import Deadline, unwatch, watch
from actions.safenet import BLOCKED_NETWORKS, Networks, blocked
from engine import __version__
from engine.errors import PermanentError

USER_AGENT = f"idhooks/{__version__}"
MAX_IDLE_PER_ORIGIN = 32
"""Idle keep-alive connections kept per origin; more than the delivery threads that can use one at once."""
MAX_HEAD_BYTES = 65_536
"""An answer's status line and headers together; a peer that sends more is not answering HTTP."""
MAX_HEADERS = 100
_READ_CHUNK = 65_536
REMEMBERED_URLS = 1024
REMEMBERED_URL_CHARS = 2048
"""What is worked out once per URL (the client's origin, target and Host header; the HTTP action's checked and
split URL; the quoted URL) is remembered for at most REMEMBERED_URLS URLs (then it starts again) of at most
REMEMBERED_URL_CHARS characters: a rendered path holds event text, and a longer one is worked out every time."""
_buffers = threading.local()  # each thread's read buffer: allocating 64 KiB per answer cost more than its parse
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_UNSAFE_IN_TARGET = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_IN_VALUE = re.compile(rb"[\r\n\x00]")
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
"""Headers the client writes itself (or, for Connection, never needs): a second copy would make a request
ambiguous, so a caller that passes one gets a ValueError and config that names one a load error. `Host` is
written once: the caller's when it gives one (a destination's config), else the URL's."""


class Headers(dict[str, str]):
    """An answer's headers, looked up without regard to case (`headers.get("retry-after")`). A header sent
    more than once keeps its values joined by ", " (RFC 9110 5.3)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        merged: dict[str, str] = {}
        for name, value in items:
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        super().__init__(merged)

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


class BadAnswerError(Exception):
    """What the peer sent is not an HTTP answer idhooks accepts; the message says why in the parser's or
    idhooks's words, never with the peer's bytes."""


class ClosedEarlyError(ConnectionError):
    """The peer closed the connection before its answer was complete."""


class _Origin(NamedTuple):
    """Where a connection goes, and how: connections are reused only for the same origin. A tuple: it is a key
    of the idle connections and of the remembered URLs, and a frozen dataclass hashed itself in Python."""

    scheme: str
    host: str
    port: int
    verify: bool | str
    proxy: str | None


def remember(memo: dict[Any, Any], key: Any, value: Any, chars: int) -> Any:
    """`value`, kept in `memo` under `key` when the URL it was worked out from (`chars` long) is short enough; a
    full memo is emptied first (REMEMBERED_URLS). A lost race between threads only works a URL out twice."""
    if chars <= REMEMBERED_URL_CHARS:
        if len(memo) >= REMEMBERED_URLS:
            memo.clear()
        memo[key] = value
    return value


class HttpClient:
    """Keep-alive HTTP/1.1 for the actions of one configuration. Thread-safe: each request takes an idle
    connection of its origin (or opens one) and gives it back when its answer was read whole.

    `blocked_networks`: peers never called (tests pass loopback to see the connect-time check work).
    `on_answer`: called with each answer (`idhooks destinations test` prints them)."""

    def __init__(self, blocked_networks: Networks = BLOCKED_NETWORKS,
                 on_answer: Callable[[Answer], None] | None = None) -> None:
        self.blocked_networks = blocked_networks
        self.on_answer = on_answer
        self._idle: dict[_Origin, list[socket.socket]] = {}
        self._lock = threading.Lock()
        self._contexts: dict[bool | str, ssl.SSLContext] = {}
        self._places: dict[tuple[str, bool | str, str | None], tuple[_Origin, str, bytes]] = {}
        weakref.finalize(self, _close_all, self._idle)  # a reload drops the old client: close its sockets too

    def request(self, method: str, url: str, *, headers: Mapping[str, str | bytes], body: bytes | None,
                connect_timeout: float, limit: Deadline, max_response_bytes: int, verify: bool | str = True,
                proxy: str | None = None) -> Answer:
        """Send one request and read its answer within `limit`, the innermost deadline running in this thread
        (actions/deadline.deadline(): its watchdog is what ends a blocked read). Raises OSError (and its subclasses: timeouts,
        refused connections, TLS failures, ClosedEarlyError), BadAnswerError, SlowAnswerError, ValueError for a
        request that cannot be sent (an invalid URL or header), PermanentError for a blocked peer."""
        origin, head = self.head(method, url, headers, body, verify, proxy)
        sock = self._connection(origin, connect_timeout, limit)
        try:  # blocking calls: the deadline's watchdog shuts the socket down when the attempt's time is up
            sock.sendall(head + body if body else head)
            answer, reusable = _read_answer(sock, max_response_bytes, limit)
        except BaseException:
            sock.close()
            raise
        unwatch(sock)  # first: this attempt's deadlines must not shut it once it is back in the pool
        if reusable and not limit.passed:
            self._give_back(origin, sock)
        else:  # the peer closes it, or the answer was cut at the cap: never reuse a connection mid-answer
            sock.close()
        if self.on_answer is not None:
            self.on_answer(answer)
        return answer

    def head(self, method: str, url: str, headers: Mapping[str, str | bytes], body: bytes | None,
             verify: bool | str, proxy: str | None) -> tuple[_Origin, bytes]:
        """Where a request goes and its request line and headers (ValueError for one that cannot be sent): the
        same for a blocking request and the delivery lane's (actions/httplane.py)."""
        origin, target, host = self._place(url, verify, proxy)
        fields: dict[str, str | bytes] = {}
        if proxy is not None and origin.scheme == "http":
            fields.update(_proxy_headers(proxy))
        names = {name.lower(): name for name in headers}
        if names.keys() & FRAMING_HEADERS:
            raise ValueError(f"refused headers {sorted(names.keys() & FRAMING_HEADERS)}: the client writes them itself")
        if "user-agent" not in names:
            fields["User-Agent"] = USER_AGENT
        fields.update(headers)
        if "host" in names:  # a destination's own Host (virtual hosting behind an address); never from a rule
            given = fields.pop(names["host"])
            host = given if isinstance(given, bytes) else str(given).encode("latin-1")
        if body is not None or method not in ("GET", "HEAD"):
            fields["Content-Length"] = str(len(body or b""))
        return origin, _request_head(method, target, host, fields)

    def _place(self, url: str, verify: bool | str, proxy: str | None) -> tuple[_Origin, str, bytes]:
        """(origin, request target, Host header) of `url`, remembered for the URLs seen last: a rule with a
        fixed path sends to one URL, and splitting it again for every delivery was a tenth of the client's
        own time (issue 14). ValueError for a URL that is not absolute http(s)."""
        key = (url, verify, proxy)
        place = self._places.get(key)
        if place is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an absolute http:// or https:// URL: {url!r}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            origin = _Origin(parts.scheme, parts.hostname, port, verify, proxy)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            if proxy is not None and parts.scheme == "http":
                target = f"http://{parts.netloc}{target}"  # a forward proxy takes the absolute URL
            place = remember(self._places, key, (origin, target, _host_header(origin)), len(url))
        return place

    def _connection(self, origin: _Origin, connect_timeout: float, limit: Deadline) -> socket.socket:
        """An idle connection of `origin` that is still open, else a new one (connected now, so that the
        connect timeout and the peer check apply before anything is sent)."""
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                sock = idle.pop() if idle else None
            if sock is None:
                break
            if _still_open(sock):
                watch(sock)
                return sock
            sock.close()
        return self._connect(origin, min(connect_timeout, max(limit.remaining(), 0.001)))

    def _connect(self, origin: _Origin, timeout: float) -> socket.socket:
        via = urlsplit(origin.proxy) if origin.proxy else None
        address = (via.hostname or "", via.port or 80) if via else (origin.host, origin.port)
        sock = socket.create_connection(address, timeout)
        try:
            peer = blocked(sock.getpeername()[0], self.blocked_networks) if via is None else None
            if peer is not None:
                raise PermanentError(f"refused: {address[0]!r} connected to {peer}, a link-local/metadata address "
                                     "idhooks never calls")
            watch(sock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if origin.scheme != "https":
                sock.settimeout(None)  # connected: from here the deadline's watchdog bounds every call
                return sock
            if via is not None:
                _tunnel(sock, origin, str(origin.proxy))
            tls = self._tls(origin.verify).wrap_socket(sock, server_hostname=origin.host)
        except BaseException:
            sock.close()
            raise
        watch(tls)  # wrapping detached the TCP socket registered above
        tls.settimeout(None)
        return tls

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

    def _give_back(self, origin: _Origin, sock: socket.socket) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(sock)
                return
        sock.close()


_HEAD_STARTS: dict[tuple[str, str, bytes], bytes] = {}
"""The request line and Host header of the requests sent last, checked: a rule with a fixed path sends one."""
_NAMES: dict[str, bytes] = {}
"""Header names checked and encoded already (a destination sends the same few on every request)."""


def _request_head(method: str, target: str, host: bytes, fields: Mapping[str, str | bytes]) -> bytes:
    """The request line and headers, refusing what could end a line or a header early (ValueError)."""
    start = _HEAD_STARTS.get((method, target, host))
    if start is None:
        if _UNSAFE_IN_TARGET.search(target) or not _TOKEN.match(method):
            raise ValueError(f"refused request line {method} {target!r}: whitespace or control characters")
        if _UNSAFE_IN_VALUE.search(host) or not host.strip():
            raise ValueError("refused header 'Host': empty, or it holds CR, LF or NUL")
        start = remember(_HEAD_STARTS, (method, target, host), f"{method} {target} HTTP/1.1\r\nHost: ".encode("ascii")
                         + host, len(target))
    lines = [start]
    for name, value in fields.items():
        data = value if isinstance(value, bytes) else str(value).encode("latin-1")
        encoded = _NAMES.get(name)
        if encoded is None:
            if not _TOKEN.match(name):
                raise ValueError(f"refused header {name!r}: a name must be a token")
            encoded = remember(_NAMES, name, name.encode("ascii"), len(name))
        if _UNSAFE_IN_VALUE.search(data):
            raise ValueError(f"refused header {name!r}: a value holds no CR, LF or NUL")
        lines.append(encoded + b": " + data.strip(b" \t"))
    lines += [b"", b""]
    return b"\r\n".join(lines)


def _host_header(origin: _Origin) -> bytes:
    host = origin.host.encode("idna") if not origin.host.isascii() else origin.host.encode("ascii")
    if b":" in host:
        host = b"[" + host + b"]"  # an IPv6 literal
    default = 443 if origin.scheme == "https" else 80
    return host if origin.port == default else host + b":%d" % origin.port


class _Answer:
    """httptools callbacks gathering one answer: the head bounded, the body kept up to `cap` bytes."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.reason = b""
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.head_done = self.complete = self.trailing = self.keep_alive = False
        self.head_size = 0
        self.head_fed = 0  # bytes fed while the head was not complete
        self.framed = False  # Content-Length or chunked: otherwise the body ends when the connection does
        self.status = 0
        self.parser: Any = httptools.HttpResponseParser(self)

    def feed(self, data: bytes | memoryview) -> None:
        """Parse the next bytes of the answer; BadAnswerError for what is not HTTP (in the parser's words), or for
        a head that goes on past twice MAX_HEAD_BYTES (one endless header line: stopped before the parser
        buffers it all)."""
        if not self.head_done:
            self.head_fed += len(data)
            if self.head_fed > 2 * MAX_HEAD_BYTES:
                raise BadAnswerError(f"the head of the answer is over {MAX_HEAD_BYTES // 1024} KiB")
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, BadAnswerError):
                raise exc.__context__ from None
            if not isinstance(exc.__context__, _TrailingBytesError):
                raise
        except httptools.HttpParserError as exc:
            raise BadAnswerError(str(exc)[:100] or type(exc).__name__) from None

    def result(self) -> tuple[Answer, bool]:
        """The answer, and whether its connection may carry another request."""
        return (Answer(self.status, self.reason.decode("latin-1"), Headers(self.headers), b"".join(self.chunks)),
                self.complete and not self.trailing and self.keep_alive)

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the answer: stop here, and never reuse this connection
            self.trailing = True
            raise _TrailingBytesError()

    def on_status(self, reason: bytes) -> None:
        self.reason += reason
        self.head_size += len(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADERS:
            raise BadAnswerError(f"more than {MAX_HEADERS} header lines")
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_HEAD_BYTES:
            raise BadAnswerError(f"the head of the answer is over {MAX_HEAD_BYTES // 1024} KiB")
        text = name.decode("latin-1")
        if text.lower() in ("content-length", "transfer-encoding"):
            self.framed = True
        self.headers.append((text, value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.status = self.parser.get_status_code()

    def on_body(self, data: bytes) -> None:
        if self.size < self.cap:
            self.chunks.append(data[:self.cap - self.size])
        self.size += len(data)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200 and self.status != 101:  # an interim answer: the real one follows
            self.reason, self.headers, self.head_done, self.framed, self.head_size = b"", [], False, False, 0
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # only known until the parser resets


class _TrailingBytesError(Exception):
    """Raised from a callback to stop the parser at bytes that follow a complete answer."""


def _read_answer(sock: socket.socket, cap: int, until: Deadline) -> tuple[Answer, bool]:
    """Read and parse one answer; (the answer, whether the connection may carry another request)."""
    answer = _Answer(cap)
    view = getattr(_buffers, "view", None)
    if view is None:  # the parser's callbacks copy what they keep, so the buffer is reused for every answer
        view = _buffers.view = memoryview(bytearray(_READ_CHUNK))
    while not answer.complete and answer.size < cap:
        if until.passed:
            raise SlowAnswerError()
        count = sock.recv_into(view)
        if count == 0:
            if answer.head_done and not answer.framed and answer.status not in (204, 304):
                break  # a body delimited by the end of the connection
            raise ClosedEarlyError("the connection closed before the answer was complete")
        answer.feed(view[:count])
    if until.passed and not answer.complete:
        raise SlowAnswerError()
    return answer.result()


def _tunnel(sock: socket.socket, origin: _Origin, proxy: str) -> None:
    """CONNECT through the proxy to the origin; OSError when the proxy does not open the tunnel."""
    sock.sendall(connect_request(origin, proxy))
    head = b""
    while not tunnel_opened(head):
        chunk = sock.recv(4096)
        if not chunk:
            raise ClosedEarlyError("the proxy closed the connection before opening the tunnel")
        head += chunk


def connect_request(origin: _Origin, proxy: str) -> bytes:
    """The CONNECT request that asks `proxy` for a tunnel to `origin`."""
    authority = _host_header(_Origin(origin.scheme, origin.host, origin.port, True, None))
    if b":" not in authority.rsplit(b"]", 1)[-1]:
        authority += b":%d" % origin.port
    return _request_head("CONNECT", authority.decode("ascii"), authority, _proxy_headers(proxy))


def tunnel_opened(head: bytes) -> bool:
    """Whether the proxy's answer to CONNECT, `head` so far, is whole: False while more must be read, True when
    the tunnel is open; BadAnswerError or ConnectionRefusedError when it will not be."""
    if b"\r\n\r\n" not in head:
        if len(head) > MAX_HEAD_BYTES:
            raise BadAnswerError("the proxy's answer to CONNECT is over 64 KiB")
        return False
    status = head.split(b"\r\n", 1)[0].split(b" ")
    if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
        raise BadAnswerError("the proxy's answer to CONNECT is not HTTP")
    if not status[1].startswith(b"2"):
        raise ConnectionRefusedError(f"the proxy refused the tunnel: {int(status[1])}")
    return True


def _close_all(idle: dict[_Origin, list[socket.socket]]) -> None:
    for socks in idle.values():
        for sock in socks:
            sock.close()
    idle.clear()


def _still_open(sock: socket.socket) -> bool:
    """An idle keep-alive socket is fine while nothing can be read from it: readable means the peer closed
    it (or sent something unasked), and it must not carry another request."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


def _proxy_headers(proxy: str) -> dict[str, str | bytes]:
    """Proxy-Authorization from the proxy URL's user:password, if it has one."""
    parts = urlsplit(proxy)
    if parts.username is None:
        return {}
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}
