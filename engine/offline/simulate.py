"""A stand-in for the Asgardeo hub and the WSO2 IS publisher, so a user can test an endpoint without a tenant.

`verify_subscription` sends the WebSub verification GET and explains every way the answer can fail (the
hub drops the subscription silently on each of them). `build_event` / `serialize` / `EventSender` send
catalog events signed and serialised byte-for-byte the way each publisher does, so what passes here passes
in production. Everything takes its `requests.Session`, clock and id source as arguments (tests swap them).
"""

from __future__ import annotations

import copy
import json
import secrets as random_tokens
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import requests

from engine import catalog
from engine.config.schema import suggest
from engine.errors import ConfigError
from engine.match.context import claim_uri
from engine.secrets import Secret
from engine.verify.signature import sign

LEASE_SECONDS = 864000
# format -> (JSON separators, signature header): the hub re-serialises with ", " between members.
FORMATS = {"hub": ((", ", ":"), "X-Hub-Signature"), "wso2-is": ((",", ":"), "x-wso2-event-signature")}


# -- verification ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    what: str
    fix: str


@dataclass
class VerifyReport:
    challenge: str
    status: int | None = None
    content_type: str = ""
    body: bytes = b""
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_subscription(url: str, topic: str, mode: str = "subscribe", *, session: requests.Session | None = None,
                        challenge: str | None = None, timeout: float = 10.0) -> VerifyReport:
    """Send the hub's verification GET to `url` and diagnose the answer (never raises on network errors)."""
    challenge = challenge or random_tokens.token_urlsafe(24)
    params = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
    if mode == "subscribe":
        params["hub.lease_seconds"] = str(LEASE_SECONDS)
    report = VerifyReport(challenge=challenge)
    if url.lower().startswith("http://"):
        report.notes.append("http:// is fine for a local test, but the Asgardeo hub only calls https:// endpoints "
                            "with a publicly trusted certificate: put TLS in front (docs/deployment.md)")
    try:
        get = session.get if session else requests.get
        response = get(url, params=params, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        report.problems.append(_connection_problem(exc, url, timeout))
        return report
    report.status, report.body = response.status_code, response.content
    report.content_type = response.headers.get("Content-Type", "")
    report.problems.extend(_answer_problems(report, response.headers.get("Location", "")))
    return report


def _connection_problem(exc: requests.RequestException, url: str, timeout: float) -> Problem:
    if isinstance(exc, requests.exceptions.SSLError):
        return Problem(f"TLS handshake failed: {exc}",
                       "the hub accepts only a certificate from a public CA, with its full chain and a matching "
                       "host name; terminate TLS at a reverse proxy (docs/deployment.md)")
    if isinstance(exc, requests.Timeout):
        return Problem(f"no answer within {timeout:g} s",
                       "the endpoint must answer the verification at once: check that the reverse proxy "
                       "forwards to the running idhooks process")
    return Problem(f"cannot connect to {url}: {type(exc).__name__}",
                   "start idhooks (`idhooks serve --config config.yaml`) and check the host and port; the hub "
                   "must reach this URL from the internet (DNS, firewall, NAT)")


_STATUS_FIXES = {
    400: "the endpoint did not see hub.mode, hub.topic and hub.challenge: a proxy may strip the query string",
    401: "the hub sends no credentials: exempt the webhook path from authentication at the proxy "
         "(idhooks checks the HMAC signature of every event instead)",
    404: "either the path is wrong (the URL must end with the webhook's `path` in config.yaml, by default "
         "/webhooks/<name>) or the topic is not agreed (idhooks answers 404 for a hub.topic outside the "
         "webhook's `topics` patterns: add one such as '<tenant>.*.schema.wso2.v1.event.*')",
    405: "the endpoint must accept GET (verification) as well as POST (events) on the same URL",
}
_STATUS_FIXES[403] = _STATUS_FIXES[401]


def _answer_problems(report: VerifyReport, location: str) -> list[Problem]:
    status = report.status or 0
    if 300 <= status < 400:
        return [Problem(f"redirect ({status}) to {location or 'an unknown location'}",
                        "the hub does not follow redirects: register the final URL in the console "
                        "(check http -> https and a trailing slash)")]
    if status == 404 and b"topic not agreed" in report.body:
        return [Problem("status 404: the endpoint does not agree to this topic",
                        "add a pattern matching it to the webhook's `topics` in config.yaml, "
                        "e.g. '<tenant>.*.schema.wso2.v1.event.*', then reload (SIGHUP)")]
    if status != 200:
        fix = _STATUS_FIXES.get(status) or (
            "see idhooks' log; a 502/503/504 comes from a proxy that cannot reach idhooks" if status >= 500
            else "the hub expects 200 with the challenge as the whole body")
        return [Problem(f"status {status} (expected 200)", fix)]
    problems = _body_problems(report.body, report.challenge)
    if report.content_type.split(";")[0].strip().lower() != "text/plain":
        problems.append(Problem(f"content type {report.content_type or '(none)'!r} (expected 'text/plain')",
                                "answer the verification with Content-Type: text/plain"))
    return problems


def _body_problems(body: bytes, challenge: str) -> list[Problem]:
    expected = challenge.encode()
    if body == expected:
        return []
    if body.rstrip(b"\r\n") == expected:
        return [Problem("the body ends with a newline after the challenge",
                        "echo the challenge exactly: no trailing newline (print/echo add one)")]
    if body.strip() == expected:
        return [Problem("the body has whitespace around the challenge", "echo the challenge exactly, nothing else")]
    if expected in body:
        return [Problem("the challenge is wrapped in other text (JSON, quotes or HTML)",
                        "answer with the challenge alone as a text/plain body")]
    what = "the body is empty" if not body else "the body is not the challenge that was sent"
    return [Problem(what, "echo the hub.challenge query parameter exactly as the body of a 200 answer")]


# -- events ------------------------------------------------------------------------------------------
def load_template(source: str) -> dict[str, Any]:
    """A catalog alias's (or alias/variant's) sample, or a Security Event Token read from a JSON file."""
    names = catalog.sample_names()
    if source in names:
        return catalog.sample(source)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"unknown event {source!r}{suggest(source, names)}: give a catalog alias or "
                          "alias/variant (list them with `idhooks catalog`) or the path of a JSON file")
    try:
        event = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read a JSON event: {exc}") from None
    if not isinstance(event, dict) or not isinstance(event.get("events"), dict) or not event["events"]:
        raise ConfigError(f"{path}: expected a Security Event Token with an 'events' object")
    return event


def parse_override(text: str) -> tuple[str, Any]:
    """`path=value` -> (path, value); the value is JSON when it parses as JSON, else the plain string."""
    path, sep, raw = text.partition("=")
    if not sep or not path.strip():
        raise ConfigError(f"--set {text!r}: expected path=value, e.g. initiatorIpAddress=203.0.113.9")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return path.strip(), value


def apply_override(body: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path of the event body; `claims.X` sets claim X (short name or full URI) in user.claims."""
    if path.startswith("claims."):
        _set_claim(body, path[len("claims."):], value)
        return
    *parents, last = path.removeprefix("$.").split(".")
    node: Any = body
    for index, part in enumerate(parents):
        node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ConfigError(f"--set {path}: {'.'.join(parents[:index + 1])} is not an object in this event")
    node[last] = value


def _set_claim(body: dict[str, Any], name: str, value: Any) -> None:
    uri = claim_uri(name)
    user = body.setdefault("user", {})
    claims = user.setdefault("claims", []) if isinstance(user, dict) else None
    if not isinstance(claims, list):
        raise ConfigError(f"--set claims.{name}: user.claims is not a list in this event")
    existing = next((c for c in claims if isinstance(c, dict) and c.get("uri") == uri), None)
    if existing is None:
        claims.append({"uri": uri, "value": value})
    else:
        existing["value"] = value


def build_event(template: dict[str, Any], overrides: list[tuple[str, Any]], *, jti: str,
                iat_ms: int) -> dict[str, Any]:
    """A fresh copy of `template` with a new jti/iat and the overrides applied to every event body."""
    event = copy.deepcopy(template)
    event["jti"], event["iat"] = jti, iat_ms
    for body in event["events"].values():
        for path, value in overrides:
            apply_override(body, path, value)
    return event


def serialize(event: dict[str, Any], fmt: str, secret: Secret) -> tuple[bytes, dict[str, str]]:
    """(body, headers) exactly as the chosen publisher sends them."""
    separators, header = FORMATS[fmt]
    body = json.dumps(event, separators=separators, ensure_ascii=False).encode("utf-8")
    return body, {"Content-Type": "application/json", header: sign(body, secret.reveal())}


@dataclass(frozen=True)
class SendResult:
    jti: str
    status: int | None  # None when the request failed before an answer
    detail: str  # reason phrase, or the connection error
    body: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class EventSender:
    """Sends built events at a bounded rate; clock, sleep and ids are injectable for tests."""

    url: str
    secret: Secret
    fmt: str = "hub"
    session: requests.Session = field(default_factory=requests.Session)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    new_jti: Callable[[], str] = lambda: str(uuid.uuid4())
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    timeout: float = 10.0

    def send_all(self, template: dict[str, Any], overrides: list[tuple[str, Any]], count: int,
                 rate: float | None) -> Iterator[SendResult]:
        """Yields each result as its answer arrives (so the caller can report progress)."""
        start = self.clock()
        for index in range(count):
            if rate and index:
                self.sleep(max(0.0, start + index / rate - self.clock()))
            yield self.send_one(template, overrides)

    def send_one(self, template: dict[str, Any], overrides: list[tuple[str, Any]]) -> SendResult:
        event = build_event(template, overrides, jti=self.new_jti(), iat_ms=self.now_ms())
        body, headers = serialize(event, self.fmt, self.secret)
        try:
            response = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout,
                                         allow_redirects=False)
        except requests.RequestException as exc:
            return SendResult(event["jti"], None, type(exc).__name__)
        return SendResult(event["jti"], response.status_code, response.reason or "", response.text[:200])


SEND_HINTS = {
    401: "the signature did not verify: --secret-env must hold the webhook's secret from config.yaml",
    404: "no webhook at this path: the URL must end with the webhook's `path` in config.yaml",
    413: "the event is larger than server.max_body_bytes",
    415: "the endpoint wants Content-Type: application/json",
}
