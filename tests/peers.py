"""Real peers on loopback for delivery tests: an HTTP target, a Slack-compatible server, an SMTP server.

Each is a real server on 127.0.0.1 that the code under test talks to over TCP; nothing is patched.
- `HttpPeer`: answers from a script of canned responses (then a default), records every request with
  its headers and body; can fail the first N calls, redirect, or hold requests until released.
- `SlackPeer`: speaks the incoming-webhook contract (`POST /services/...`: 200 `ok`, 400
  `invalid_payload`, 404 `no_service`, 429 + Retry-After) and the Web API `POST /api/chat.postMessage`
  contract (bearer token checked; `{"ok": true, ...}` or `{"ok": false, "error": ...}`).
- `SmtpPeer`: aiosmtpd with STARTTLS (a self-signed cert made with the `openssl` CLI) and AUTH.
- `RawPeer`: answers each request with bytes the test chooses (not HTTP, cut short, ...) and keeps each
  request head as it arrived; `ForwardProxy`: an HTTP forward proxy (absolute URIs and CONNECT tunnels).
  Both are `TcpPeer`s: a thread per accepted connection.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port


LOST = 0
"""A Response status meaning: drop the connection without answering (a lost answer)."""


@dataclass
class Response:
    status: int = 200
    body: bytes | str | dict = b"ok"
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode(), "application/json; charset=utf-8"
        data = self.body.encode() if isinstance(self.body, str) else self.body
        return data, "text/plain; charset=utf-8"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (read timeout tests) is expected; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class HttpPeer:
    """A loopback HTTP server answering from `script` (first in, first out), then `default`."""

    def __init__(self, default: Response | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.default = default or Response(200, b"ok")
        self.script: list[Response] = []
        self.requests: list[Request] = []
        self.arrivals = 0  # requests read, including those still held
        self.connections = 0  # TCP connections accepted (keep-alive reuse shows as fewer than requests)
        self.pending_answers = self.most_pending = 0  # requests received and not yet answered (the most at once)
        self.delay = 0.0  # seconds each answer takes (a target that is slower than loopback, not held)
        self.received = threading.Condition()
        self.hold = threading.Event()  # cleared: requests wait until released (a slow target)
        self.hold.set()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        if tls is not None:  # HTTPS with the (cert, key) of make_certificate()
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def fail_first(self, count: int, status: int = 500, **kwargs: Any) -> None:
        self.script.extend(Response(status, **kwargs) for _ in range(count))

    def answer(self, request: Request) -> Response:
        return self.script.pop(0) if self.script else self.default

    def wait_for(self, count: int, timeout: float = 10) -> list[Request]:
        """Block until at least `count` requests arrived (bounded), then return them all."""
        with self.received:
            self.received.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def wait_for_arrivals(self, count: int, timeout: float = 10) -> int:
        """Block until at least `count` requests were read (held ones included); how many were."""
        with self.received:
            self.received.wait_for(lambda: self.arrivals >= count, timeout)
            return self.arrivals

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # header and body go out as separate writes

            def setup(self) -> None:
                super().setup()
                with peer.received:
                    peer.connections += 1

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()),
                                  self.rfile.read(length))
                with peer.received:
                    peer.arrivals += 1
                    peer.pending_answers += 1
                    peer.most_pending = max(peer.most_pending, peer.pending_answers)
                    peer.received.notify_all()
                peer.hold.wait(30)
                time.sleep(peer.delay)
                with peer.received:
                    response = peer.answer(request)
                    peer.requests.append(request)
                    peer.pending_answers -= 1
                    peer.received.notify_all()
                if response.status == LOST:  # processed, but the answer never reaches the caller
                    self.close_connection = True
                    return
                body, content_type = response.encoded()
                self.send_response(response.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


class SlackPeer(HttpPeer):
    """Slack's two contracts. Queue a specific answer with `script` (e.g. `rate_limited(30)`)."""

    TOKEN = "xoxb-test-token-7d1e"

    def answer(self, request: Request) -> Response:
        if self.script:
            return self.script.pop(0)
        if request.path == "/api/chat.postMessage":
            return self._post_message(request)
        if request.path.startswith("/services/"):
            return self._incoming_webhook(request)
        return Response(404, b"no_service")

    def _incoming_webhook(self, request: Request) -> Response:
        try:
            message = request.json()
        except ValueError:
            return Response(400, b"invalid_payload")
        if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
            return Response(400, b"no_text")
        return Response(200, b"ok")

    def _post_message(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return Response(200, {"ok": False, "error": "invalid_auth"})
        message = request.json()
        if not message.get("channel"):
            return Response(200, {"ok": False, "error": "channel_not_found"})
        return Response(200, {"ok": True, "channel": "C024BE91L", "ts": "1700000000.000100"})


def redirect(location: str, status: int = 302) -> Response:
    return Response(status, b"", {"Location": location})


def rate_limited(seconds: int) -> Response:
    return Response(429, b"rate_limited", {"Retry-After": str(seconds)})


def api_error(error: str) -> Response:
    return Response(200, {"ok": False, "error": error})


class TcpPeer:
    """A loopback TCP server that serves each accepted connection in a thread of its own (`_serve`), counting
    them; the base of the peers below that speak HTTP by hand."""

    def __init__(self) -> None:
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError


class RawPeer(TcpPeer):
    """A TCP peer that answers every request on a connection with `answer(n)` (n counts requests overall) and
    then, when `close_after` is set, closes the connection without saying so."""

    def __init__(self, answer: Callable[[int], bytes], close_after: bool = False) -> None:
        self.answer, self.close_after = answer, close_after
        self.requests = 0
        self.heads: list[bytes] = []  # each request's line and headers, as they arrived
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                self.heads.append(head)
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                self.requests += 1
                try:
                    conn.sendall(self.answer(self.requests))
                except OSError:  # the client stopped reading (an answer it refused part way)
                    return
                if self.close_after:
                    return


class ForwardProxy(TcpPeer):
    """An HTTP forward proxy on loopback (RFC 9110 7.3.2, RFC 9112 3.2.2): `GET http://host:port/path` is sent on
    to the origin in origin form, and `CONNECT host:port` opens a tunnel (200, then bytes both ways). Records each
    request line and its Proxy-Authorization, which it never passes on."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []  # (request line, Proxy-Authorization)
        super().__init__()

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"

    def _serve(self, client: socket.socket) -> None:
        with client:
            reader = client.makefile("rb")
            line = reader.readline(65537).decode("latin-1").rstrip("\r\n")
            headers: list[str] = []
            while (header := reader.readline(65537).decode("latin-1").rstrip("\r\n")):
                headers.append(header)
            authorization = next((h.split(":", 1)[1].strip() for h in headers
                                  if h.lower().startswith("proxy-authorization:")), None)
            self.seen.append((line, authorization))
            method, target, version = line.split(" ")
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)))
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._pipe(client, upstream)
                return
            parts = urlsplit(target)
            length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0)
            body = reader.read(length)
            kept = [h for h in headers if not h.lower().startswith(("proxy-", "connection:"))]
            with socket.create_connection((parts.hostname, parts.port or 80)) as upstream:
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                upstream.sendall("\r\n".join([f"{method} {path} {version}", *kept, "Connection: close", "", ""])
                                 .encode("latin-1") + body)
                answer = b""
                while chunk := upstream.recv(65536):
                    answer += chunk
            head, _, rest = answer.partition(b"\r\n\r\n")
            client.sendall(head + b"\r\nConnection: close\r\n\r\n" + rest)

    @staticmethod
    def _pipe(one: socket.socket, other: socket.socket) -> None:
        def copy(source: socket.socket, target: socket.socket) -> None:
            try:
                while chunk := source.recv(65536):
                    target.sendall(chunk)
            except OSError:
                pass
            finally:
                for sock in (source, target):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        back = threading.Thread(target=copy, args=(other, one), daemon=True)
        back.start()
        copy(one, other)
        back.join(10)
        other.close()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key), made with the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


class _Inbox:
    """aiosmtpd handler keeping every accepted message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.received = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
        with self.received:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            self.received.notify_all()
        return "250 Message accepted for delivery"


class SmtpPeer:
    """A real SMTP server on loopback; with `cert`: STARTTLS (or implicit TLS) and AUTH (only over TLS)."""

    USER, PASSWORD = "mailer", "smtp-pass-61c0"

    def __init__(self, cert: tuple[Path, Path] | None = None, *, implicit_tls: bool = False) -> None:
        self.inbox = _Inbox()
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            # aiosmtpd only counts STARTTLS as TLS for AUTH; with implicit TLS every byte is encrypted anyway
            tls = {"ssl_context": context, "auth_require_tls": False} if implicit_tls else \
                {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
            kwargs = {**tls, "authenticator": self._authenticate}
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == self.USER.encode() \
            and data.password == self.PASSWORD.encode()
        return AuthResult(success=ok, handled=False)

    @property
    def messages(self) -> list[tuple[str, list[str], bytes]]:
        return self.inbox.messages

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture
def http_peer() -> Iterator[HttpPeer]:
    peer = HttpPeer()
    yield peer
    peer.close()


@pytest.fixture
def slack_peer() -> Iterator[SlackPeer]:
    peer = SlackPeer()
    yield peer
    peer.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp() -> Iterator[SmtpPeer]:
    peer = SmtpPeer()
    yield peer
    peer.close()


@pytest.fixture
def smtp_tls(certificate: tuple[Path, Path]) -> Iterator[SmtpPeer]:
    """SMTP requiring STARTTLS before AUTH, with the module's self-signed certificate."""
    peer = SmtpPeer(certificate)
    yield peer
    peer.close()
