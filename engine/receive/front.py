"""The async intake: the main port's ASGI app, served by granian (engine/receive/httpserver.py).

An event POST is read, verified, parsed and stored in the event loop, and its 202 waits for the group commit
as a coroutine, not as a blocked thread (issue 14: the request -> writer -> request hand-off of a thread per
request was half of what a durable write cost). Everything else (health, readiness, WebSub verification,
/metrics, the API and the console) is the Falcon WSGI app, run in a bounded pool of `server.threads` threads
once its request has arrived whole: a slow or idle client costs a coroutine, never a thread.

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
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import unquote_to_bytes

from engine.config.settings import Config, ServerConfig, WebhookConfig
from engine.errors import BusyError, RequestError, RequestTimeoutError, StoreError, TooLargeError
from engine.receive.app import INTAKE_HEADERS, WebhookSink, check_json_media, error_answer
from engine.runtime import Current

log = logging.getLogger("idhooks.http")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_INTAKE_HEADERS = frozenset(INTAKE_HEADERS)
_PROXY_HEADERS = frozenset((b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-port",
                            b"x-forwarded-by", b"forwarded"))
"""Never passed on to the app: a client could claim any address or scheme with them (`server.trusted_proxy`
names the one proxy whose X-Forwarded-For gives the client's address)."""
_JSON = [(b"content-type", b"application/json")]


class ClientGoneError(Exception):
    """The client closed the connection before its request arrived whole: there is no one to answer."""


def client_address(scope: dict[str, Any], trusted_proxy: str | None) -> str:
    """The peer's address; behind `server.trusted_proxy`, the last X-Forwarded-For entry that proxy added."""
    peer = scope.get("client")
    address = str(peer[0]) if peer else ""
    if trusted_proxy and address == trusted_proxy:
        forwarded = [value for name, value in scope["headers"] if name == b"x-forwarded-for"]
        if forwarded:
            last = forwarded[-1].decode("latin-1").split(",")[-1].strip()
            if last:
                address = last[:64]
    return address


def head_size(scope: dict[str, Any]) -> int:
    """About the bytes of the request line and headers as sent (granian's own bound is its read buffer)."""
    size = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b"")) + 16
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
    return size


def content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
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


async def read_body(receive: Receive, limit: int, declared: int | None, budget: BodyBudget) -> bytes:
    """The whole body, refusing more than `limit` bytes (before reading, when Content-Length says so) and
    more than the budget lets all requests hold together. The caller gives the body's size back to `budget`
    once it is done with it; on an error here, what was taken is given back already."""
    if declared is not None and declared > limit:
        raise TooLargeError(f"body of {declared} bytes exceeds max_body_bytes ({limit})")
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGoneError()
            chunk = message.get("body", b"")
            if size + len(chunk) > limit:
                raise TooLargeError(f"body exceeds max_body_bytes ({limit})")
            budget.take(len(chunk))
            size += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    except BaseException:
        budget.give_back(size)
        raise


def wsgi_environ(scope: dict[str, Any], body: bytes, client: str) -> dict[str, Any]:
    """The WSGI environ of an ASGI request (PEP 3333): headers as HTTP_*, latin-1 strings. A header name with
    an underscore is dropped (it would collide with a dash's CGI name), as are the proxy headers."""
    raw_path = scope.get("raw_path")
    path = raw_path.split(b"?", 1)[0] if raw_path else scope["path"].encode("utf-8")
    server = scope.get("server") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"], "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]), "SERVER_PORT": str(server[1] if server[1] is not None else ""),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}", "SERVER_SOFTWARE": "idhooks",
        "REMOTE_ADDR": client, "REMOTE_HOST": client,
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.get("scheme", "http"), "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in scope["headers"]:
        if name in _PROXY_HEADERS or b"_" in name or name == b"content-length":
            continue
        text = value.decode("latin-1")
        key = "CONTENT_TYPE" if name == b"content-type" else "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


def run_wsgi(app: WsgiApp, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
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
    return (int(status.split(" ", 1)[0]),
            [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers], body)


class Front:
    """The ASGI app of the main port: event POSTs in the event loop, every other route through `wsgi_app`."""

    def __init__(self, sink: WebhookSink, wsgi_app: WsgiApp, config: Current[Config], *, bridge_limit: int) -> None:
        settings = config.get().server
        self.sink, self.wsgi_app, self.config = sink, wsgi_app, config
        self.settings: ServerConfig = settings  # the listener's settings: a reload does not change them
        self.bridge_limit = bridge_limit
        self.budget = BodyBudget(settings.max_buffered_bytes)
        self.pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="idhooks-http")
        self.in_flight = 0

    async def blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) in the pool's threads (store reads and writes that would block the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, partial(fn, *args))

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.in_flight += 1
        try:
            started = time.perf_counter()
            if head_size(scope) > self.settings.max_request_header_size:
                await self.answer(send, 431, {}, {"error": "request line and headers exceed "
                                                            f"server.max_request_header_size "
                                                            f"({self.settings.max_request_header_size} bytes)"})
                return
            client = client_address(scope, self.settings.trusted_proxy)
            webhook = self.sink.webhook_for(scope["path"]) if scope["method"] == "POST" else None
            limit = self.config.get().server.max_body_bytes if webhook is not None else self.bridge_limit
            try:
                body = await self.read(scope, receive, limit)
            except ClientGoneError:
                # granian reports a body it cannot parse (a malformed chunk) as a disconnect too: answer 400,
                # which goes nowhere when the client really left, instead of granian's 500 for no answer
                await self.answer(send, 400, {}, {"error": "the request's body ended early or is malformed"})
                return
            except RequestError as exc:
                if webhook is not None:
                    self.sink.refused(webhook, exc, started)
                await self.answer(send, *error_answer(exc, scope["path"]))
                return
            try:
                if webhook is not None:
                    await self.event(scope, send, webhook, body, client, started)
                else:
                    await self.bridge(scope, send, body, client)
            finally:
                self.budget.give_back(len(body))
        except Exception:  # a bug: granian's own log is off, so say it here, and answer if still possible
            log.exception("request failed", extra={"method": scope.get("method"), "path": scope["path"][:200]})
            await self.answer(send, 500, {}, {"error": "internal error"})
        finally:
            self.in_flight -= 1

    async def read(self, scope: dict[str, Any], receive: Receive, limit: int) -> bytes:
        """The body within `limit` bytes and `server.channel_timeout` seconds."""
        try:
            async with asyncio.timeout(self.settings.channel_timeout):
                return await read_body(receive, limit, content_length(scope), self.budget)
        except TimeoutError:
            raise RequestTimeoutError(f"the request's body did not arrive within server.channel_timeout "
                                      f"({self.settings.channel_timeout:g} s)") from None

    async def event(self, scope: dict[str, Any], send: Send, webhook: WebhookConfig, body: bytes,
                    client: str, started: float) -> None:
        """A webhook's event POST (WebhookSink.receive, without a thread)."""
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1")
            if key in _INTAKE_HEADERS:
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]},{text}" if key in headers else text
        try:
            check_json_media(headers.get("content-type"))
        except RequestError as exc:
            self.sink.refused(webhook, exc, started)
            await self.answer(send, *error_answer(exc, scope["path"]))
            return
        try:  # receive_async counts and logs its own refusals
            data = await self.sink.receive_async(webhook, headers, body, client, self.blocking)
        except (RequestError, StoreError) as exc:
            await self.answer(send, *error_answer(exc, scope["path"]))
            return
        await self.answer(send, 202, {}, data)

    async def bridge(self, scope: dict[str, Any], send: Send, body: bytes, client: str) -> None:
        status, headers, data = await self.blocking(run_wsgi, self.wsgi_app, wsgi_environ(scope, body, client))
        await self.respond(send, status, headers, data)

    @staticmethod
    async def answer(send: Send, status: int, headers: dict[str, str], data: dict[str, Any]) -> None:
        """A JSON answer (an event's 202, or a refusal from error_answer)."""
        await Front.respond(send, status, _JSON + [(k.lower().encode("latin-1"), v.encode("latin-1"))
                                                   for k, v in headers.items()], json.dumps(data).encode())

    @staticmethod
    async def respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except (OSError, RuntimeError) as exc:  # the client left (ASGI: OSError); an event is stored already
            log.debug("answer not delivered: the client left", extra={"status": status, "error": str(exc)})

    def close(self) -> None:
        """After the drain (httpserver.DRAIN_TIMEOUT): queued requests are dropped and the service is stopped
        without waiting for a request still running in a pool thread (Python joins that thread at exit)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
