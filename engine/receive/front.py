"""The async intake: the main port's RSGI app, served by granian (engine/receive/httpserver.py).

An event POST is read, verified, parsed and stored in the event loop, and its 202 waits for the group commit
as a coroutine, not as a blocked thread (issue 14: the request -> writer -> request hand-off of a thread per
request was half of what a durable write cost). Everything else (health, readiness, WebSub verification,
/metrics, the API and the console) is the Falcon WSGI app, run in a bounded pool of `server.threads` threads
once its request has arrived whole: a slow or idle client costs a coroutine, never a thread.

Why RSGI (granian's own interface) and not ASGI: the request's scope and headers stay in granian until read,
a body declared small is gathered by granian in one call, and the answer is one call, where ASGI built a
dict per message and a list of every header per request (issue 14: about 12 us of CPU per request of the
~54 us granian's ASGI side cost; +4-11 % events/s with two processes).

What granian hands over, and so what idhooks sees: the path percent-decoded as UTF-8 (an invalid escape is
U+FFFD), the query string as sent, header names in lower case and only header values of visible ASCII (a
header with other bytes is left out, as if not sent).

Limits on what a caller can grow, whatever the route: the body is bounded before it is read (Content-Length)
and while it is read, and must arrive within `server.channel_timeout` (408 otherwise); the request line and
headers within granian's header timeout and `server.max_request_header_size`; concurrent requests by
`server.connection_limit`.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, AsyncIterator, Callable, Iterable, Protocol

from granian._granian import RSGIProtocolClosed, RSGIProtocolError

from engine import cpus, threadnames
from engine.config.settings import Config, ServerConfig, WebhookConfig
from engine.errors import BusyError, RequestError, RequestTimeoutError, StoreError, TooLargeError
from engine.receive.app import INTAKE_HEADERS, WebhookSink, check_json_media, error_answer
from engine.runtime import Current

log = logging.getLogger("idhooks.http")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Headers = list[tuple[str, str]]

WHOLE_BODY_BYTES = 65536
"""A body whose Content-Length is at most this is gathered by granian in one call, and counted against
`server.max_buffered_bytes` for its declared length from the start; a longer or chunked one is read chunk by
chunk and counted as it arrives (so a client that promises much and sends little holds only what it sent)."""

_PROXY_HEADERS = frozenset(("x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
                            "x-forwarded-by", "forwarded"))
"""Never passed on to the app: a client could claim any address or scheme with them (`server.trusted_proxy`
names the one proxy whose X-Forwarded-For gives the client's address)."""
_JSON: Headers = [("content-type", "application/json")]
_GONE = (RSGIProtocolClosed, RSGIProtocolError)
"""What granian raises when the client left, or its body was malformed (a bad chunk), or the answer could not
be sent."""


class RequestHeaders(Protocol):
    """granian's RSGIHeaders: names in lower case."""

    def __contains__(self, key: str) -> bool: ...
    def get(self, key: str, default: Any = None) -> Any: ...
    def get_all(self, key: str) -> list[str]: ...
    def items(self) -> list[tuple[str, str]]: ...


class Scope(Protocol):
    """granian's RSGI HTTP scope (what this module reads of it)."""

    proto: str
    method: str
    path: str
    query_string: str
    client: str
    server: str
    scheme: str
    http_version: str

    @property
    def headers(self) -> RequestHeaders: ...


class Transport(Protocol):
    """granian's RSGI HTTP protocol: the body (whole, or chunk by chunk) and the answer."""

    async def __call__(self) -> bytes: ...
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    def response_bytes(self, status: int, headers: Headers, body: bytes) -> None: ...


class ClientGoneError(Exception):
    """The client closed the connection before its request arrived whole: there is no one to answer."""


def _host(address: str) -> str:
    """The host of granian's "host:port" ("[v6]:port" for IPv6)."""
    host = address.rpartition(":")[0] if ":" in address else address
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def client_address(scope: Scope, trusted_proxy: str | None) -> str:
    """The peer's address; behind `server.trusted_proxy`, the last X-Forwarded-For entry that proxy added."""
    address = _host(scope.client or "")
    if trusted_proxy and address == trusted_proxy:
        forwarded = scope.headers.get_all("x-forwarded-for")
        if forwarded:
            last = forwarded[-1].split(",")[-1].strip()
            if last:
                address = last[:64]
    return address


def head_size(scope: Scope) -> int:
    """About the bytes of the request line and headers as sent (granian's own bound is its read buffer)."""
    size = len(scope.path) + len(scope.query_string) + 16
    for name, value in scope.headers.items():
        size += len(name) + len(value) + 4
    return size


def content_length(scope: Scope) -> int | None:
    value = scope.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class BodyBudget:
    """The bytes of request bodies held at once, over all connections (`server.max_buffered_bytes`): each body
    is bounded, but a thousand connections each sending one just under the bound would hold gigabytes. A
    request that would go over is answered 503 with Retry-After (the hub retries), and its bytes are freed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.limit:
            raise BusyError(f"{self.held} bytes of request bodies are being received, the most "
                            f"server.max_buffered_bytes ({self.limit}) allows; retry shortly")
        self.held += size

    def give_back(self, size: int) -> None:
        self.held -= size


async def read_body(transport: Transport, limit: int, declared: int | None, chunked: bool,
                    budget: BodyBudget) -> bytes:
    """The whole body, refusing more than `limit` bytes (before reading, when Content-Length says so) and
    more than the budget lets all requests hold together. The caller gives the body's size back to `budget`
    once it is done with it; on an error here, what was taken is given back already.

    A body of a declared length is exact or refused: one that ends short is the client's leaving. A chunked
    body that breaks off or whose framing is malformed is ended by granian as if it were complete: what
    arrived is the body (an event's signature then fails; the API's JSON fails to parse)."""
    if declared is not None and declared > limit:
        raise TooLargeError(f"body of {declared} bytes exceeds max_body_bytes ({limit})")
    if declared is None and not chunked:  # HTTP/1.1: neither Content-Length nor Transfer-Encoding is no body
        return b""
    if declared is not None and declared <= WHOLE_BODY_BYTES:
        budget.take(declared)
        try:
            body = await transport()
        except _GONE:
            body = b""
        except BaseException:  # the body's deadline (cancelled): what was taken goes back
            budget.give_back(declared)
            raise
        if len(body) != declared:
            budget.give_back(declared)
            raise ClientGoneError()
        return body
    chunks: list[bytes] = []
    size = 0
    try:
        try:
            async for chunk in transport:
                if size + len(chunk) > limit:
                    raise TooLargeError(f"body exceeds max_body_bytes ({limit})")
                budget.take(len(chunk))
                size += len(chunk)
                chunks.append(chunk)
        except _GONE:
            raise ClientGoneError() from None
        if declared is not None and size != declared:
            raise ClientGoneError()
        return b"".join(chunks)
    except BaseException:
        budget.give_back(size)
        raise


def wsgi_environ(scope: Scope, body: bytes, client: str) -> dict[str, Any]:
    """The WSGI environ of a request (PEP 3333): headers as HTTP_*, latin-1 strings. A header name with
    an underscore is dropped (it would collide with a dash's CGI name), as are the proxy headers."""
    server = scope.server or ""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.method, "SCRIPT_NAME": "",
        "PATH_INFO": scope.path.encode("utf-8", "surrogatepass").decode("latin-1"),
        "QUERY_STRING": scope.query_string,
        "SERVER_NAME": _host(server), "SERVER_PORT": server.rpartition(":")[2],
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version or '1.1'}", "SERVER_SOFTWARE": "idhooks",
        "REMOTE_ADDR": client, "REMOTE_HOST": client,
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.scheme or "http", "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in scope.headers.items():
        if name in _PROXY_HEADERS or "_" in name or name == "content-length":
            continue
        key = "CONTENT_TYPE" if name == "content-type" else "HTTP_" + name.upper().replace("-", "_")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def run_wsgi(app: WsgiApp, environ: dict[str, Any]) -> tuple[int, Headers, bytes]:
    """Call the WSGI app and gather its whole answer (idhooks's answers are small)."""
    answer: list[Any] = []
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None and answer:
            raise exc_info[1].with_traceback(exc_info[2])
        answer[:] = [status, headers]
        return written.append

    result = app(environ, start_response)
    try:
        body = b"".join([*written, *result])
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = answer
    return int(status.split(" ", 1)[0]), [(name.lower(), value) for name, value in headers], body


class _Deadline:
    """A request task's body deadline (Front.read): cancels the task once, and remembers that it did, so the
    cancellation is told from a shutdown's."""

    __slots__ = ("task", "expired")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task, self.expired = task, False

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()


class Front:
    """The RSGI app of the main port: event POSTs in the event loop, every other route through `wsgi_app`."""

    def __init__(self, sink: WebhookSink, wsgi_app: WsgiApp, config: Current[Config], *, bridge_limit: int,
                 granian_cpus: set[int] | None = None) -> None:
        """`granian_cpus`: the CPUs granian's threads run on (engine/cpus.split_cpus); None for wherever this
        thread may run."""
        settings = config.get().server
        self.granian_cpus = granian_cpus
        self.sink, self.wsgi_app, self.config = sink, wsgi_app, config
        self.settings: ServerConfig = settings  # the listener's settings: a reload does not change them
        self.bridge_limit = bridge_limit
        self.budget = BodyBudget(settings.max_buffered_bytes)
        self.pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="idhooks-http")
        self.in_flight = 0

    async def blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) in the pool's threads (store reads and writes that would block the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, partial(fn, *args))

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """granian calls this in the event loop's thread just before it starts its own HTTP threads from there, and
        they take that thread's name and CPUs: for that moment it is `granian`, so `top -H` and the benchmarks
        tell granian's threads from the event loop's (engine/threadnames.py), and it may run on `granian_cpus`."""
        loop.call_soon(threadnames.rename_current("granian"))
        if self.granian_cpus is not None:
            loop.call_soon(cpus.pin_current(self.granian_cpus))

    async def __rsgi__(self, scope: Scope, transport: Transport) -> None:
        if scope.proto != "http":
            return
        self.in_flight += 1
        try:
            started = time.perf_counter()
            if head_size(scope) > self.settings.max_request_header_size:
                self.answer(transport, 431, {}, {"error": "request line and headers exceed "
                                                          f"server.max_request_header_size "
                                                          f"({self.settings.max_request_header_size} bytes)"})
                return
            client = client_address(scope, self.settings.trusted_proxy)
            webhook = self.sink.webhook_for(scope.path) if scope.method == "POST" else None
            limit = self.config.get().server.max_body_bytes if webhook is not None else self.bridge_limit
            try:
                body = await self.read(scope, transport, limit)
            except ClientGoneError:
                # granian reports a body it cannot parse (a malformed chunk) as a closed transport too: answer
                # 400, which goes nowhere when the client really left, instead of granian's 500 for no answer
                self.answer(transport, 400, {}, {"error": "the request's body ended early or is malformed"})
                return
            except RequestError as exc:
                if webhook is not None:
                    self.sink.refused(webhook, exc, started)
                self.answer(transport, *error_answer(exc, scope.path))
                return
            try:
                if webhook is not None:
                    await self.event(scope, transport, webhook, body, client, started)
                else:
                    await self.bridge(scope, transport, body, client)
            finally:
                self.budget.give_back(len(body))
        except Exception:  # a bug: granian's own log is off, so say it here, and answer if still possible
            log.exception("request failed", extra={"method": scope.method, "path": scope.path[:200]})
            self.answer(transport, 500, {}, {"error": "internal error"})
        finally:
            self.in_flight -= 1

    async def read(self, scope: Scope, transport: Transport, limit: int) -> bytes:
        """The body within `limit` bytes and `server.channel_timeout` seconds.

        The deadline is one timer that cancels this task, not `asyncio.timeout()`: that scope's enter and exit
        (coroutines, the current task, a handle rescheduled) were a twentieth of the intake's time per event
        (issue 14)."""
        task = asyncio.current_task()
        if task is None:  # granian's Rust task implementation: no task to cancel, so no deadline; refuse it
            raise RuntimeError("the request's body deadline needs an asyncio task")
        deadline = _Deadline(task)
        timer = asyncio.get_running_loop().call_later(self.settings.channel_timeout, deadline.expire)
        try:
            return await read_body(transport, limit, content_length(scope), "transfer-encoding" in scope.headers,
                                   self.budget)
        except asyncio.CancelledError:
            if deadline.expired and task.uncancel() == 0:
                raise RequestTimeoutError(f"the request's body did not arrive within server.channel_timeout "
                                          f"({self.settings.channel_timeout:g} s)") from None
            raise
        finally:
            timer.cancel()

    async def event(self, scope: Scope, transport: Transport, webhook: WebhookConfig, body: bytes,
                    client: str, started: float) -> None:
        """A webhook's event POST (WebhookSink.receive, without a thread)."""
        found = scope.headers
        headers: dict[str, str] = {}
        for name in INTAKE_HEADERS:
            values = found.get_all(name)  # none for a header whose value is not visible ASCII: as if not sent
            if values:
                headers[name] = values[0] if len(values) == 1 else ",".join(values)
        try:
            check_json_media(headers.get("content-type"))
        except RequestError as exc:
            self.sink.refused(webhook, exc, started)
            self.answer(transport, *error_answer(exc, scope.path))
            return
        try:  # receive_async counts and logs its own refusals
            data = await self.sink.receive_async(webhook, headers, body, client, self.blocking)
        except (RequestError, StoreError) as exc:
            self.answer(transport, *error_answer(exc, scope.path))
            return
        self.answer(transport, 202, {}, data)

    async def bridge(self, scope: Scope, transport: Transport, body: bytes, client: str) -> None:
        status, headers, data = await self.blocking(run_wsgi, self.wsgi_app, wsgi_environ(scope, body, client))
        self.respond(transport, status, headers, data)

    @staticmethod
    def answer(transport: Transport, status: int, headers: dict[str, str], data: dict[str, Any]) -> None:
        """A JSON answer (an event's 202, or a refusal from error_answer)."""
        extra = [(name.lower(), value) for name, value in headers.items()]
        Front.respond(transport, status, _JSON + extra if extra else _JSON, json.dumps(data).encode())

    @staticmethod
    def respond(transport: Transport, status: int, headers: Headers, body: bytes) -> None:
        try:
            transport.response_bytes(status, headers, body)
        except (*_GONE, RuntimeError) as exc:  # the client left; an event is stored already
            log.debug("answer not delivered: the client left", extra={"status": status, "error": str(exc)})

    def close(self) -> None:
        """After the drain (httpserver.DRAIN_TIMEOUT): queued requests are dropped and the service is stopped
        without waiting for a request still running in a pool thread (Python joins that thread at exit)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
