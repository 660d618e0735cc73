"""Loopback servers speaking the documented contracts of on-call, chat and SIEM services.

- `PagerDutyPeer`: Events API v2 `POST /v2/enqueue`: 202 `{"status": "success", "dedup_key"}`; 400
  `{"status": "invalid event", "errors": [...]}` for a bad routing key, action, severity or missing payload.
- `OpsgeniePeer`: Alert API v2 `POST /v2/alerts` and `POST /v2/alerts/<alias>/close?identifierType=alias`
  with `Authorization: GenieKey <key>` (401 otherwise): 202 `{"result": "Request will be processed"}`;
  422 when message is missing or over 130 characters. Keeps open alerts by alias, as Opsgenie does.
- `SplunkHecPeer`: `POST /services/collector/event` with `Authorization: Splunk <token>`: 200
  `{"text": "Success", "code": 0}`; 401 code 2 (no token), 403 code 4 (invalid token), 400 code 6/12.
- `TeamsPeer`: a Workflows webhook: 202 for a message carrying one Adaptive Card, 400 otherwise.
- `SyslogPeer`: a syslog receiver on UDP, TCP or TLS; TCP/TLS read RFC 6587 octet-counted frames only;
  `parse_rfc5424` and `parse_cef` take records apart the way a SIEM would.
"""

from __future__ import annotations

import json
import re
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from tests.peers import HttpPeer, Request, Response


class PagerDutyPeer(HttpPeer):
    ROUTING_KEY = "R0UT1NGKEY0000000000000000000042"

    def __init__(self) -> None:
        super().__init__()
        self.incidents: dict[str, str] = {}  # dedup_key -> triggered | resolved

    def answer(self, request: Request) -> Response:
        if self.script:
            return self.script.pop(0)
        if request.path != "/v2/enqueue" or request.method != "POST":
            return Response(404, {"status": "not found"})
        try:
            event = request.json()
        except ValueError:
            return _invalid("Event object is invalid", "body is not JSON")
        errors = self.errors(event)
        if errors:
            return _invalid("Event object is invalid", *errors)
        self.incidents[event["dedup_key"]] = "resolved" if event["event_action"] == "resolve" else "triggered"
        return Response(202, {"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]})

    def errors(self, event: Any) -> list[str]:
        if not isinstance(event, dict):
            return ["event must be an object"]
        found = []
        if event.get("routing_key") != self.ROUTING_KEY:
            found.append("'routing_key' is invalid")
        if event.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            found.append("'event_action' is invalid")
        if event.get("event_action") == "trigger":
            payload = event.get("payload") or {}
            if not payload.get("summary") or len(payload["summary"]) > 1024:
                found.append("'payload.summary' is missing or too long")
            if payload.get("severity") not in ("critical", "error", "warning", "info"):
                found.append("'payload.severity' is invalid")
            if not payload.get("source"):
                found.append("'payload.source' is missing")
        return found


def _invalid(message: str, *errors: str) -> Response:
    return Response(400, {"status": "invalid event", "message": message, "errors": list(errors)})


class OpsgeniePeer(HttpPeer):
    API_KEY = "eb243592-faa2-4ba2-a551q-1afdf565c889"

    def __init__(self) -> None:
        super().__init__()
        self.alerts: dict[str, dict[str, Any]] = {}  # open alerts by alias

    def answer(self, request: Request) -> Response:
        if self.script:
            return self.script.pop(0)
        if request.headers.get("Authorization") != f"GenieKey {self.API_KEY}":
            return Response(401, {"message": "Key format is not valid!", "took": 0.001, "requestId": "r1"})
        close = re.fullmatch(r"/v2/alerts/([^/]+)/close", request.path)
        if close and request.query.get("identifierType") == ["alias"]:
            self.alerts.pop(unquote(close.group(1)), None)
            return _accepted()
        if request.path != "/v2/alerts" or request.method != "POST":
            return Response(404, {"message": "Could not find resource", "took": 0.001})
        alert = request.json()
        message = alert.get("message") if isinstance(alert, dict) else None
        if not isinstance(message, str) or not message or len(message) > 130:
            return Response(422, {"message": "Request body is not processable. Please check the errors.",
                                  "errors": {"message": "Message can not be empty or longer than 130."}})
        self.alerts.setdefault(alert.get("alias") or message, alert)
        return _accepted()


def _accepted() -> Response:
    return Response(202, {"result": "Request will be processed", "took": 0.107, "requestId": "43a29c5c"})


class SplunkHecPeer(HttpPeer):
    TOKEN = "2f0e1c6a-7c2b-4f4e-9d15-b1a7c0b9d3e2"

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def answer(self, request: Request) -> Response:
        if self.script:
            return self.script.pop(0)
        if request.path != "/services/collector/event":
            return Response(404, {"text": "The requested URL was not found on this server.", "code": 404})
        auth = request.headers.get("Authorization", "")
        if not auth:
            return Response(401, {"text": "Token is required", "code": 2})
        if auth != f"Splunk {self.TOKEN}":
            return Response(403, {"text": "Invalid token", "code": 4})
        try:
            event = json.loads(request.body.decode("utf-8"))
        except ValueError:
            return Response(400, {"text": "Invalid data format", "code": 6, "invalid-event-number": 0})
        if not isinstance(event, dict) or event.get("event") in (None, ""):
            return Response(400, {"text": "Event field is required", "code": 12, "invalid-event-number": 0})
        fields = event.get("fields", {})
        if not isinstance(fields, dict) or any(isinstance(v, dict) for v in fields.values()):
            return Response(400, {"text": "Error in handling indexed fields", "code": 15, "invalid-event-number": 0})
        self.events.append(event)
        return Response(200, {"text": "Success", "code": 0})


class TeamsPeer(HttpPeer):
    def answer(self, request: Request) -> Response:
        if self.script:
            return self.script.pop(0)
        if not request.path.startswith("/workflows/"):
            return Response(404, {"error": {"code": "TriggerNotFound"}})
        try:
            message = request.json()
            [attachment] = message["attachments"]
            card = attachment["content"]
            ok = (message["type"] == "message" and attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
                  and card["type"] == "AdaptiveCard" and isinstance(card["body"], list))
        except (ValueError, KeyError, TypeError):
            ok = False
        return Response(202, b"") if ok else Response(400, {"error": {"code": "InvalidRequestContent"}})


@dataclass
class Syslog5424:
    pri: int
    version: str
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    structured_data: dict[str, dict[str, str]]
    msg: str


_SD_PARAM = re.compile(r'\s*([^=\s\]"]+)="((?:\\.|[^"\\])*)"')


def parse_rfc5424(line: str) -> Syslog5424:
    """Take an RFC 5424 message apart strictly, as a receiver would (ValueError when it is not one)."""
    head = re.match(r"^<(\d{1,3})>(\d) (\S+) (\S+) (\S+) (\S+) (\S+) ", line)
    if not head:
        raise ValueError(f"not RFC 5424: {line[:80]!r}")
    rest = line[head.end():]
    elements: dict[str, dict[str, str]] = {}
    if rest.startswith("-"):
        rest = rest[1:]
    else:
        while rest.startswith("["):
            sd_id = re.match(r"\[([^\s=\]\"]+)", rest)
            if not sd_id:
                raise ValueError(f"bad SD-ELEMENT: {rest[:60]!r}")
            rest, params = rest[sd_id.end():], {}
            while not rest.startswith("]"):
                param = _SD_PARAM.match(rest)
                if not param:
                    raise ValueError(f"bad SD-PARAM: {rest[:60]!r}")
                params[param.group(1)] = re.sub(r'\\(["\\\]])', r"\1", param.group(2))  # RFC 5424 6.3.3
                rest = rest[param.end():]
            elements[sd_id.group(1)] = params
            rest = rest[1:]
    msg = rest[1:] if rest.startswith(" ") else rest
    return Syslog5424(int(head.group(1)), head.group(2), *head.groups()[2:], elements,
                      msg[1:] if msg.startswith("\ufeff") else msg)


def parse_cef(text: str) -> tuple[list[str], dict[str, str]]:
    """CEF header fields (escapes undone) and extension pairs, split on unescaped separators."""
    if not text.startswith("CEF:"):
        raise ValueError(f"not CEF: {text[:60]!r}")
    fields, current, i = [], "", 0
    while len(fields) < 7:
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current += text[i + 1]
            i += 2
            continue
        if c == "|":
            fields.append(current)
            current = ""
        else:
            current += c
        i += 1
    extension = text[i:]
    pairs: dict[str, str] = {}
    keys = list(re.finditer(r"(?:^|(?<=\s))([A-Za-z0-9_]+)=", extension))
    keys = [k for k in keys if not _escaped(extension, k.end() - 1)]
    for key, following in zip(keys, keys[1:] + [None]):
        raw = extension[key.end():following.start() if following else len(extension)].rstrip(" ")
        pairs[key.group(1)] = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), raw)
    return fields, pairs


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index - 1 - backslashes >= 0 and text[index - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


class SyslogPeer:
    """A syslog receiver on 127.0.0.1 (`udp`, `tcp` or `tls` with `certificate`), keeping every message."""

    def __init__(self, protocol: str, certificate: tuple[str, str] | None = None, *, read: bool = True) -> None:
        self.protocol, self.messages, self.received = protocol, [], threading.Condition()
        self.framing_errors: list[str] = []
        self.read = read  # False: accept connections but never read (a stuck receiver)
        peer = self
        if protocol == "udp":
            class Udp(socketserver.BaseRequestHandler):
                def handle(self) -> None:
                    peer._keep(self.request[0])

            self.server: socketserver.BaseServer = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
        else:
            context = None
            if protocol == "tls":
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(*certificate)  # type: ignore[misc]

            class Stream(socketserver.StreamRequestHandler):
                def handle(self) -> None:
                    if context is None:
                        peer._read_frames(self.request)
                        return
                    try:
                        conn = context.wrap_socket(self.request, server_side=True)
                    except (OSError, ssl.SSLError):
                        return  # the client refused our certificate: what the test is about
                    with conn:
                        peer._read_frames(conn)

            self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Stream)
            self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        self.stop = threading.Event()

    def _keep(self, data: bytes) -> None:
        with self.received:
            self.messages.append(data.decode("utf-8"))
            self.received.notify_all()

    def _read_frames(self, conn: socket.socket) -> None:
        """RFC 6587 octet counting: `LEN SP MSG`, repeated until the sender closes."""
        if not self.read:
            self.stop.wait(30)
            return
        buffer = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buffer += chunk
            while True:
                head = re.match(rb"^([1-9][0-9]{0,8}) ", buffer)
                if not head:
                    if buffer and not re.match(rb"^[0-9]{0,9}$", buffer):
                        self.framing_errors.append(buffer[:40].decode("utf-8", "replace"))
                        return
                    break
                size = int(head.group(1))
                if len(buffer) < head.end() + size:
                    break
                self._keep(buffer[head.end():head.end() + size])
                buffer = buffer[head.end() + size:]

    def wait_for(self, count: int, timeout: float = 10) -> list[str]:
        with self.received:
            self.received.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SCIM_LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SCIM_PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class ScimPeer(HttpPeer):
    """A SCIM 2.0 service provider (RFC 7643/7644) for Users under /scim/v2, bearer-token protected:
    POST /Users -> 201 (409 uniqueness on userName or externalId); GET /Users?filter=externalId eq "x" or
    userName eq "x" -> ListResponse; GET/PUT/PATCH (PatchOp replace) /Users/{id} -> 200; DELETE -> 204;
    an unknown id -> 404. `lose_next` processes the next request but drops its answer."""

    TOKEN = "scim-token-5be1"

    def __init__(self) -> None:
        super().__init__()
        self.users: dict[str, dict[str, Any]] = {}
        self.lose_next = 0
        self.down_for: set[str] = set()  # externalIds whose create answers 503 (a backend shard that is down)
        self._ids = iter(f"scim-{n:04d}" for n in range(1, 10_000))

    def answer(self, request: Request) -> Response:
        if self.script:
            return self.script.pop(0)
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return _scim_error(401, "authorization failure")
        answer = self._route(request)
        if self.lose_next:
            self.lose_next -= 1
            return Response(0)
        return answer

    def _route(self, request: Request) -> Response:
        path = request.path.removeprefix("/scim/v2")
        if path == "/Users":
            return self._create(request) if request.method == "POST" else self._search(request)
        match = re.fullmatch(r"/Users/([^/]+)", path)
        if not match:
            return _scim_error(404, f"no such endpoint {request.path}")
        user = self.users.get(match.group(1))
        if user is None:
            return _scim_error(404, f"Resource {match.group(1)} not found")
        if request.method == "DELETE":
            del self.users[user["id"]]
            return Response(204, b"")
        if request.method == "PATCH":
            return self._patch(user, request.json())
        if request.method == "PUT":
            user.update({k: v for k, v in request.json().items() if k not in ("id", "meta")})
        return _scim(200, user)

    def _create(self, request: Request) -> Response:
        body = request.json()
        if isinstance(body, dict) and body.get("externalId") in self.down_for:
            return _scim_error(503, "service unavailable")
        if not isinstance(body, dict) or SCIM_USER not in body.get("schemas", []) or not body.get("userName"):
            return _scim_error(400, "userName is required", "invalidValue")
        for user in self.users.values():
            if user["userName"] == body["userName"] or body.get("externalId") and user.get("externalId") == body["externalId"]:
                return _scim_error(409, "User already exists", "uniqueness")
        user = {**body, "id": next(self._ids), "meta": {"resourceType": "User"}}
        self.users[user["id"]] = user
        return _scim(201, user)

    def _search(self, request: Request) -> Response:
        match = re.fullmatch(r'(externalId|userName) eq "(.*)"', (request.query.get("filter") or [""])[0])
        if not match:
            return _scim_error(400, "unsupported filter", "invalidFilter")
        found = [u for u in self.users.values() if u.get(match.group(1)) == match.group(2)]
        return _scim(200, {"schemas": [SCIM_LIST], "totalResults": len(found), "Resources": found})

    @staticmethod
    def _patch(user: dict[str, Any], body: Any) -> Response:
        if not isinstance(body, dict) or SCIM_PATCH not in body.get("schemas", []):
            return _scim_error(400, "not a PatchOp", "invalidSyntax")
        for operation in body.get("Operations", []):
            if operation.get("op", "").lower() != "replace" or not operation.get("path"):
                return _scim_error(400, "only replace with a path is supported", "invalidPath")
            user[operation["path"]] = operation.get("value")
        return _scim(200, user)


def _scim(status: int, body: dict[str, Any]) -> Response:
    return Response(status, body)


def _scim_error(status: int, detail: str, scim_type: str = "") -> Response:
    error: dict[str, Any] = {"schemas": [SCIM_ERROR], "status": str(status), "detail": detail}
    if scim_type:
        error["scimType"] = scim_type
    return Response(status, error)
