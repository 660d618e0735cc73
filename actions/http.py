"""`http`: call an HTTP API (e.g. provision a new user elsewhere) with a templated path, query and body.

Outbound safety, because event data fills the request:
- event values in `path` are percent-encoded as one path segment where they enter the template
  (actions/escaping.py), so they cannot add a segment, a query or a fragment; `query` values go out
  encoded as query values; a path with a segment that decodes (even repeatedly) to `.` or `..` is refused;
- the scheme, host and port come from the destination's `base_url`; an absolute URL in a rule's path may
  only name another origin listed in `allowed_hosts` (`host` for the scheme's default port, or
  `host:port`, same scheme), otherwise the call is refused;
- redirects are never followed; link-local / cloud metadata addresses (169.254.0.0/16, fe80::/10,
  fd00:ec2::254) are refused after resolving the host, whatever the allow-list says, and again at connect
  time (actions/safenet.py) so DNS rebinding cannot slip past the first check;
- a connect timeout, a total deadline for the whole attempt (a slow-drip answer is cut off; see
  actions/deadline.py) and a response size cap always apply; `verify: false` logs a warning at load.
Every request carries `Idempotency-Key: <jti>:<rule id>:<action index>` so the target can deduplicate
the retries that at-least-once delivery implies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

import urllib3

from actions.base import RETRY_FIELD, ActionContext, Field, fold_line
from actions.escaping import PATH_SEGMENT
from actions.capture import capture_problems, captured_values
from actions.httpclient import FRAMING_HEADERS, remember
from actions.httplane import LaneClient
from actions.httpresult import DEFAULT_MAX_RESPONSE_BYTES, LANE_DEADLINE, HttpExchangeAction, HttpRequest, HttpResult
from actions.safenet import blocked
from engine.errors import PermanentError, RetryableError
from engine.secrets import redact, reveal

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_FORBIDDEN_HEADERS = (*sorted(FRAMING_HEADERS), "host", "idempotency-key")
_ABSOLUTE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|//)")


class HttpAction(HttpExchangeAction):
    name = "http"
    destination_type = "http"
    rule_fields = {
        "to": Field("destination", required=True, help="a destination of type http"),
        "method": Field("text", help="GET, POST, PUT, PATCH or DELETE (default POST)"),
        "path": Field("text", help="appended to the destination's base_url; each event value is one segment",
                      escape=PATH_SEGMENT),
        "query": Field("json", help="query parameters"),
        "headers": Field("json", help="extra headers (the destination's headers win)"),
        "json": Field("json", help="a JSON body: a YAML structure whose string leaves are templates"),
        "body": Field("text", help="a raw body for non-JSON payloads"),
        "content_type": Field("text", help="Content-Type of a raw body (default text/plain; charset=utf-8)"),
        "success_statuses": Field("value", help="statuses that also count as delivered, e.g. [201, 409]"),
        "capture": Field("value", help="{name: JSONPath} of values to keep from a JSON answer (needs ordered_by)"),
        "retry": RETRY_FIELD,
    }
    destination_fields = {
        "base_url": Field("value", required=True),
        "allowed_hosts": Field("value", help="other origins a rule's absolute path may call: host or host:port"),
        "headers": Field("value", help="sent with every request; values may be ${ENV} secrets"),
        "timeout": Field("value", help="seconds for the whole attempt: connect, send and the whole answer "
                                      "(default 10)"),
        "connect_timeout": Field("value", help="connect timeout in seconds (default 5)"),
        "max_response_bytes": Field("value", help=f"response size cap (default {DEFAULT_MAX_RESPONSE_BYTES})"),
        "ca_file": Field("value", help="CA bundle for a private CA"),
        "proxy": Field("value", help="an http:// forward proxy for these calls (https:// ones tunnel through it)"),
        "verify": Field("value", help="verify TLS certificates (default true)"),
    }
    test_fields = {"method": "POST",
                   "json": {"test": True, "type": "{{ type }}", "user_id": "{{ user_id }}", "username": "{{ username }}"}}

    def __init__(self, destination_name: str | None, destination: Mapping[str, Any] | None,
                 context: ActionContext) -> None:
        super().__init__(destination_name, destination, context)
        read = self.destination_reader()
        base = urlsplit(read.url("base_url", required=True) or "http://invalid.invalid")
        if "@" in base.netloc:
            read.add("base_url", "a user:password@ in the URL is never sent; give credentials as a header "
                                 "(headers: {Authorization: \"Basic ${ENV}\"})")
        self.scheme, self.netloc, self.base_path = base.scheme, base.netloc, base.path.rstrip("/")
        self.base_query = base.query  # e.g. a `?token=` of a webhook-style target (a secret: see read.secrets())
        self.origins = {_origin(base)}
        for entry in read.text_list("allowed_hosts"):
            try:
                self.origins.add(_origin(urlsplit(f"{self.scheme}://{entry}"), entry))
            except ValueError as exc:
                read.add("allowed_hosts", str(exc))
        self.headers = read.headers("headers")
        self.timeout = read.http_timeouts()
        self.max_response_bytes = int(read.number("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES,
                                                  minimum=1, whole=True))
        self.proxy: str | None = read.url("proxy")
        if self.proxy and urlsplit(self.proxy).scheme != "http":
            read.add("proxy", "expected an http:// proxy URL (https:// calls go through it in a CONNECT tunnel); "
                              "TLS to the proxy itself is not supported")
        self.verify: bool | str = read.text("ca_file") or read.boolean("verify", True)
        read.done()
        self.secrets = read.secrets()
        self._splits: dict[str, tuple[str, Any, str | None]] = {}
        self._literal_hosts: set[str] = set()  # IP literals checked and not blocked
        if self.verify is False:
            context.logger.warning("destination %r: verify: false - TLS certificates are NOT checked; anyone on "
                                   "the path can read and change these calls", destination_name)
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    @classmethod
    def check_rule_fields(cls, fields: Mapping[str, Any]) -> list[str]:
        problems = super().check_rule_fields(fields)
        if "json" in fields and "body" in fields:
            problems.append("body: give json or body, not both")
        method = fields.get("method")
        if isinstance(method, str) and "{" not in method and method.upper() not in METHODS:
            problems.append(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
        for key in ("query", "headers"):
            if key in fields and not isinstance(fields[key], Mapping):
                problems.append(f"{key}: expected a mapping of names to values")
        headers = fields.get("headers")
        if isinstance(headers, Mapping):
            problems += [f"headers.{k}: this header is set by idhooks" for k in headers
                         if str(k).lower() in _FORBIDDEN_HEADERS]
        statuses = fields.get("success_statuses", [])
        if not isinstance(statuses, list) or not all(type(s) is int and 100 <= s <= 599 for s in statuses):
            problems.append(f"success_statuses: expected a list of HTTP statuses (100-599), got {statuses!r}")
        return problems + capture_problems(fields)

    def request(self, rendered: Mapping[str, Any], idempotency_key: str) -> HttpRequest:
        return self._request(self._target(rendered), rendered, idempotency_key)

    def _request(self, target: tuple[str, str, Any, str | None], rendered: Mapping[str, Any],
                 idempotency_key: str) -> HttpRequest:
        """request() for a target _target() gave already (send and send_async check its address first)."""
        return HttpRequest(target[0], target[1], self._exchange(rendered, idempotency_key))

    def answered(self, rendered: Mapping[str, Any], result: HttpResult) -> dict[str, Any] | None:
        capture = rendered.get("capture")
        return captured_values(capture, result.body) if capture else None

    def send(self, rendered: Mapping[str, Any], idempotency_key: str) -> Mapping[str, Any] | None:
        target = self._target(rendered)
        _, _, parts, host = target
        if host not in self._literal_hosts:  # a literal's answer never changes; a name's may
            self.check_address(parts)
        return self.send_request(rendered, self._request(target, rendered, idempotency_key))

    async def send_async(self, rendered: Mapping[str, Any], idempotency_key: str,
                         lane: LaneClient) -> Mapping[str, Any] | None:
        target = self._target(rendered)
        _, _, parts, host = target
        if host not in self._literal_hosts:  # resolved off the loop: a slow resolver must not stall other sends
            loop = asyncio.get_running_loop()
            try:  # by the lane's deadline, and within the destination's timeout, as the exchange after it
                async with asyncio.timeout_at(min(LANE_DEADLINE.get(), loop.time() + self.timeout[1])):
                    addresses = await loop.run_in_executor(None, self._addresses, parts)
            except TimeoutError:
                raise RetryableError(f"cannot resolve {host!r} before the attempt's deadline") from None
            self._check_addresses(parts, addresses)
        return await self.send_request_async(rendered, self._request(target, rendered, idempotency_key), lane)

    def _target(self, rendered: Mapping[str, Any]) -> tuple[str, str, Any, str | None]:
        """(method, URL, split URL, host) of a rendered action; PermanentError for what may not be called."""
        method = str(rendered.get("method") or "POST").upper()
        if method not in METHODS:
            raise PermanentError(f"method {method!r} is not one of {', '.join(METHODS)}")
        return (method, *self._split(str(rendered.get("path") or "")))

    def _exchange(self, rendered: Mapping[str, Any], idempotency_key: str) -> dict[str, Any]:
        """The arguments of exchange() / exchange_async() besides the method and URL."""
        return {"secrets": self.secrets, "timeout": self.timeout, "max_response_bytes": self.max_response_bytes,
                "clock": self.context.clock, "success_statuses": _statuses(rendered.get("success_statuses")),
                "params": rendered.get("query") or None, "headers": self._headers(rendered, idempotency_key),
                "verify": self.verify, "proxy": self.proxy, **self._body(rendered)}

    def _split(self, path: str) -> tuple[str, Any, str | None]:
        """url_for(path), split, and its host name. Those of paths seen before are remembered (bounded:
        actions/httpclient.remember): a rule with a fixed path checks and splits it once, not per event."""
        split = self._splits.get(path)
        if split is None:
            url = self._checked_url(path)
            parts = urlsplit(url)
            split = remember(self._splits, path, (url, parts, parts.hostname), len(path))
        return split

    def url_for(self, path: str) -> str:
        """The full URL for a rendered path; refuses any scheme, host or port the destination does not allow."""
        return self._split(path)[0]

    def _checked_url(self, path: str) -> str:
        if any(c in path for c in "\\\r\n\t ") or any(ord(c) < 32 for c in path):
            raise PermanentError(f"refused path {path!r}: it contains whitespace, control characters or '\\'")
        segments = urlsplit(path).path.split("/")
        if any(_is_dot_segment(segment) for segment in segments):
            raise PermanentError(f"refused path {path!r}: '.' and '..' segments could leave the base path")
        if "" in segments[1:-1] and not _ABSOLUTE.match(path):
            raise PermanentError(f"refused path {path!r}: an empty segment (an event value that was empty?) could "
                                 "name another resource")
        if _ABSOLUTE.match(path):
            url = path if "://" in path else f"{self.scheme}:{path}"
        else:
            url = f"{self.scheme}://{self.netloc}{self.base_path}/{path.lstrip('/')}" if path else \
                f"{self.scheme}://{self.netloc}{self.base_path}"
            if self.base_query:  # only to the base_url's own origin, never to another allowed host
                url += ("&" if "?" in url else "?") + self.base_query
        parts = urlsplit(url)
        try:
            origin = _origin(parts)
        except ValueError:
            origin = None
        if parts.scheme != self.scheme or origin not in self.origins or parts.username or parts.password:
            allowed = ", ".join(sorted(f"{host}:{port}" for host, port in self.origins))
            raise PermanentError(redact(f"refused URL {url!r}: the destination {self.destination_name!r} allows "
                                        f"only {self.scheme}:// to {allowed} (add the host:port to allowed_hosts "
                                        "if it is meant to be called)", self.secrets))
        return url

    def check_address(self, parts: Any) -> None:
        """Resolve the host and refuse link-local / metadata addresses (the allow-list cannot open them). An IP
        literal needs no resolver call; shorthand forms (`127.1`) still go through getaddrinfo."""
        self._check_addresses(parts, self._addresses(parts))

    def _check_addresses(self, parts: Any, addresses: list[str]) -> None:
        for address in addresses:
            refused = blocked(address)
            if refused is not None:
                raise PermanentError(f"refused: {parts.hostname!r} resolves to {refused}, a link-local/metadata "
                                     "address idhooks never calls")
        if _is_ip_literal(parts.hostname or ""):
            self._literal_hosts.add(parts.hostname)

    def _addresses(self, parts: Any) -> list[str]:
        """The addresses `parts.hostname` stands for; none when only the proxy can resolve it."""
        if _is_ip_literal(parts.hostname or ""):
            return [parts.hostname]
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            if self.proxy:
                return []  # the proxy resolves names this host cannot; it must enforce its own policy
            raise RetryableError(f"cannot resolve {parts.hostname!r}: {exc.strerror or exc}") from None
        return [str(info[4][0]) for info in infos]

    def _headers(self, rendered: Mapping[str, Any], idempotency_key: str) -> dict[str, str | bytes]:
        extra = rendered.get("headers") or {}
        headers: dict[str, str | bytes] = {str(k): _header_value(v) for k, v in extra.items()
                                           if str(k).lower() not in _FORBIDDEN_HEADERS}
        if "json" not in rendered and rendered.get("body") is not None:
            headers["Content-Type"] = _header_value(rendered.get("content_type") or "text/plain; charset=utf-8")
        headers.update({k: str(reveal(v)) for k, v in self.headers.items()})
        headers["Idempotency-Key"] = _header_value(idempotency_key)
        return headers

    @staticmethod
    def _body(rendered: Mapping[str, Any]) -> dict[str, Any]:
        if "json" in rendered:
            return {"json": rendered["json"]}
        if rendered.get("body") is not None:
            return {"data": str(rendered["body"]).encode("utf-8", errors="replace")}
        return {}


_NO_STATUSES: frozenset[int] = frozenset()


def _statuses(given: Any) -> frozenset[int]:
    """A rule's `success_statuses` (most rules give none: one shared empty set, not a new one per send)."""
    return frozenset(given) if given else _NO_STATUSES


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
        return True
    except ValueError:
        return False


def _header_value(value: Any) -> bytes:
    """One header line's value from rendered (event) text: CR/LF folded, outer blanks stripped, UTF-8
    bytes (http.client would refuse non-Latin-1 text), so any event value is sent inertly."""
    return fold_line(value).strip().encode("utf-8", errors="replace")


def _origin(parts: Any, entry: str | None = None) -> tuple[str, int]:
    """(host, port) of a split URL, the scheme's default port when none is given; ValueError (naming
    `entry`) when it is not just a host or host:port."""
    try:
        port = parts.port
    except ValueError:
        port = -1
    if entry is not None and (not parts.hostname or port == -1 or parts.path or parts.query or parts.fragment
                              or "@" in parts.netloc):
        raise ValueError(f"expected host or host:port, got {entry!r}")
    if port == -1:
        raise ValueError(f"invalid port in {parts.netloc!r}")
    return (parts.hostname or "").lower(), port or (443 if parts.scheme == "https" else 80)


def _is_dot_segment(segment: str) -> bool:
    """Whether `segment`, percent-decoded as often as a chain of servers might, names '.' or '..' (alone
    or as a part split by '/' or '\\')."""
    for _ in range(8):
        decoded = unquote(segment)
        if decoded == segment:
            break
        segment = decoded
    return any(part in (".", "..") for part in re.split(r"[/\\]", segment))
