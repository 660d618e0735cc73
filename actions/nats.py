"""`nats`: publish to NATS JetStream and wait for the stream's acknowledgement.

Contract (JetStream publish): a message on `subject` with the header `Nats-Msg-Id: <idempotency key>`;
the stream answers with a PubAck once the message is stored. JetStream drops a message whose Msg-Id it has
seen within the stream's duplicate window, so a retry after a lost ack is not stored twice (the ack then
says `duplicate`). No stream for the subject, a refused login or an oversized message are permanent;
timeouts, connection errors and a 503 from JetStream retry.

The NATS client (nats-py) is asyncio-only while delivery workers are threads: one daemon thread runs an
event loop for every NATS destination, each send hands it one publish and waits at most `timeout` seconds
for the ack (the coroutine is cancelled at the deadline). Connections live in that loop, one per distinct
server/credentials/TLS setting, so a config reload with the same settings reuses them.

`subject` is a template rendered per event (e.g. `idhooks.{{ type }}`); a rendered subject with spaces,
control characters, wildcards (`*`, `>`) or empty tokens is refused, so event data cannot fan a message
out to other subjects.
"""

from __future__ import annotations

import asyncio
import hashlib
import concurrent.futures
import re
import ssl
import threading
from pathlib import Path
from typing import Any, Mapping

from actions.base import (EVENT_RECORD, RETRY_FIELD, Action, ActionContext, Field, clean_text, host_of,
                          json_bytes)
from engine.errors import ConfigError, PermanentError, RetryableError
from engine.secrets import Secret, redact, reveal

_SERVER = re.compile(r"^(nats|tls)://[^\s/]+$")
_TOKEN = re.compile(r"^[^\s*>.\x00-\x1f\x7f]+$")
SUBJECT_CHARS = 512


def _nats() -> Any:
    try:
        import nats
    except ImportError:
        raise ConfigError("a destination of type nats needs the NATS client: pip install 'idhooks[nats]'") from None
    return nats


class _LoopThread:
    """One asyncio loop in a daemon thread, shared by every NATS destination of the process."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coroutine: Any, timeout: float) -> Any:
        """Run `coroutine` in the loop; TimeoutError (and the coroutine cancelled) after `timeout` seconds."""
        future = asyncio.run_coroutine_threadsafe(coroutine, cls._get())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout:g}s") from None

    @classmethod
    def _get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="idhooks-nats", daemon=True).start()
                cls._loop = loop
            return cls._loop


_connections: dict[tuple, Any] = {}  # touched only inside the loop thread


class NatsAction(Action):
    name = "nats"
    destination_type = "nats"
    destination_templates = ("subject",)
    rule_fields = {
        "to": Field("destination", required=True, help="a destination of type nats"),
        "payload": Field("json", default=EVENT_RECORD,
                         help="text or a structure sent as JSON (default: the event, its derived values and the rule)"),
        "retry": RETRY_FIELD,
    }
    destination_fields = {
        "servers": Field("value", required=True, help="nats://host:port URL(s); tls:// for TLS"),
        "subject": Field("value", required=True, help="a template, rendered per event"),
        "credentials": Field("value", help="a .creds file's content (user JWT and NKey seed): give "
                                           "credentials_file: PATH (read as a secret)"),
        "tls": Field("value", help="use TLS (default: when a server URL starts with tls:// or ca_file is set)"),
        "ca_file": Field("value", help="CA bundle that signed the server's certificate"),
        "timeout": Field("value", help="seconds for connect, publish and ack (default 5)"),
    }

    def __init__(self, destination_name: str | None, destination: Mapping[str, Any] | None,
                 context: ActionContext) -> None:
        super().__init__(destination_name, destination, context)
        read = self.destination_reader()
        servers = self.destination.get("servers")
        self.servers: tuple[str | Secret, ...] = tuple(servers if isinstance(servers, list) else [servers])
        if not all(isinstance(s, (str, Secret)) and _SERVER.match(str(reveal(s))) for s in self.servers):
            read.add("servers", "expected nats://host:port or tls://host:port (or a list of them)")
        read.text("subject", required=True)
        self.credentials = read.secret_text("credentials")
        self.ca_file = read.text("ca_file")
        self.tls = read.boolean("tls", bool(self.ca_file) or any(str(reveal(s)).startswith("tls://")
                                                                 for s in self.servers))
        if self.ca_file and not Path(self.ca_file).is_file():
            read.add("ca_file", f"no such file: {self.ca_file}")
        self.timeout = read.number("timeout", 5.0, minimum=0.001)
        read.done()
        self.secrets = read.secrets()
        _nats()

    def send(self, rendered: Mapping[str, Any], idempotency_key: str) -> None:
        subject = check_subject(rendered.get("subject"))
        payload = rendered.get("payload")
        data = clean_text(payload).encode("utf-8") if isinstance(payload, str) else json_bytes(payload)
        try:
            ack = _LoopThread.run(self._publish(subject, data, msg_id(idempotency_key)), self.timeout)
        except TimeoutError as exc:
            raise RetryableError(f"nats {subject!r}: {exc}") from None
        self.context.logger.debug("nats stored", extra={"stream": ack.stream, "seq": ack.seq,
                                                        "duplicate": bool(ack.duplicate)})

    async def _publish(self, subject: str, data: bytes, msg_id: str) -> Any:
        nats = _nats()
        from nats.js import errors as js_errors

        try:
            connection = await self._connection()
            return await connection.jetstream().publish(subject, data, timeout=self.timeout,
                                                        headers={"Nats-Msg-Id": msg_id})
        except js_errors.NoStreamResponseError:
            raise PermanentError(f"nats: no JetStream stream stores subject {subject!r} (add one with "
                                 "`nats stream add`, or fix the destination's subject)") from None
        except js_errors.APIError as exc:
            error = RetryableError if exc.code == 503 else PermanentError
            raise error(f"nats {subject!r}: JetStream refused: {exc.code} {exc.description}") from None
        except (nats.errors.AuthorizationError, nats.errors.MaxPayloadError, nats.errors.BadSubjectError,
                nats.errors.NoRespondersError) as exc:
            raise PermanentError(redact(f"nats {subject!r}: {type(exc).__name__}: {exc}", self.secrets)) from None
        except ssl.SSLCertVerificationError as exc:
            await self._forget()
            raise PermanentError(f"nats {self.where()}: TLS certificate not trusted: {exc.verify_message} "
                                 "(check ca_file)") from None
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            await self._forget()
            # nats-py reports a refused login at connect as a plain Error carrying the server's message
            error = PermanentError if "authorization violation" in str(exc).lower() else RetryableError
            raise error(redact(f"nats {self.where()}: {type(exc).__name__}: {exc}", self.secrets)) from None

    def target(self) -> str:
        return ", ".join(host_of(str(reveal(s)).replace("tls://", "nats://")) for s in self.servers)

    def where(self) -> str:
        """The servers without any user:password they carry."""
        return ", ".join(re.sub(r"//[^@/]*@", "//***@", str(reveal(s))) for s in self.servers)

    def _key(self) -> tuple:
        return (tuple(str(reveal(s)) for s in self.servers), str(reveal(self.credentials)), self.tls, self.ca_file)

    async def _connection(self) -> Any:
        connection = _connections.get(self._key())
        if connection is not None and connection.is_connected:
            return connection
        await self._forget()
        options: dict[str, Any] = {"servers": [str(reveal(s)) for s in self.servers], "name": "idhooks",
                                   "connect_timeout": self.timeout, "allow_reconnect": False}
        if self.credentials is not None:
            from nats.aio.client import RawCredentials

            options["user_credentials"] = RawCredentials(str(reveal(self.credentials)))
        if self.tls:
            options["tls"] = ssl.create_default_context(cafile=self.ca_file)
        connection = _nats().NATS()
        try:
            await connection.connect(error_cb=_ignore, **options)
        except BaseException:
            # nats-py leaves the socket of a failed first attempt open when it may not reconnect (a silent peer,
            # a refused login); close it here, or it lingers until the garbage collector finds it. Only the
            # socket: the client's close() waits on a transport that may never finish closing (a failed TLS
            # handshake), which would turn a permanent error into a timeout.
            _close_socket(connection)
            raise
        _connections[self._key()] = connection
        return connection

    async def _forget(self) -> None:
        connection = _connections.pop(self._key(), None)
        if connection is not None:
            await _close_quietly(connection)


async def _close_quietly(connection: Any) -> None:
    """Close a connection that is being dropped, whatever state it is in."""
    try:
        await connection.close()
    except Exception:  # noqa: BLE001 - it is being dropped anyway
        pass


def _close_socket(connection: Any) -> None:
    """Close the socket of a client whose first connect failed (nats-py keeps it as `_transport`)."""
    transport = getattr(connection, "_transport", None)
    if transport is not None:
        try:
            transport.close()
        except Exception:  # noqa: BLE001 - it is being dropped anyway
            pass


async def _ignore(exc: Exception) -> None:
    """nats-py reports connection trouble here as well as by raising; the raised error is what counts."""


def msg_id(idempotency_key: str) -> str:
    """The Nats-Msg-Id header value: the idempotency key when it is plain printable ASCII (it carries the event's
    jti, which the sender chose), else its SHA-256, so no key can add a header line or break the header block."""
    if len(idempotency_key) <= 256 and all(33 <= ord(c) <= 126 for c in idempotency_key):
        return idempotency_key
    return "sha256:" + hashlib.sha256(idempotency_key.encode("utf-8", "surrogatepass")).hexdigest()


def check_subject(value: Any) -> str:
    """A rendered subject fit for publishing; PermanentError naming the problem otherwise."""
    subject = clean_text(value or "")
    if not subject or len(subject) > SUBJECT_CHARS or not all(_TOKEN.match(t) for t in subject.split(".")):
        raise PermanentError(f"refused subject {subject[:200]!r}: a subject is dot-separated tokens without "
                             "spaces, control characters or wildcards (* >)")
    return subject
