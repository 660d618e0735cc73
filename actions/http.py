"""`http`: call an HTTP API (e.g. provision a new user elsewhere) with a templated path, query and body.

Outbound safety, because event data fills the request:
- the scheme and host come from the destination's `base_url`; a rendered path may only name another host
  when it is listed in `allowed_hosts` (and keeps the scheme), otherwise the call is refused;
- redirects are never followed; link-local / cloud metadata addresses (169.254.0.0/16, fe80::/10,
  fd00:ec2::254) are refused after resolving the host, whatever the allow-list says, and again at connect
  time (actions/safenet.py) so DNS rebinding cannot slip past the first check;
- a connect timeout, a total deadline for the whole attempt (a slow-drip answer is cut off; see
  actions/deadline.py) and a response size cap always apply; `verify: false` logs a warning at load.
Every request carries `Idempotency-Key: <jti>:<rule id>:<action index>` so the target can deduplicate
the retries that at-least-once delivery implies.
"""

from __future__ import annotations

import re
import socket
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

import urllib3

from actions.base import RETRY_FIELD, Action, ActionContext, Field, fold_line
from actions.httpresult import DEFAULT_MAX_RESPONSE_BYTES, exchange
from actions.safenet import blocked, make_safe
from engine.errors import PermanentError, RetryableError
from engine.secrets import find_secrets, reveal

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_FORBIDDEN_HEADERS = ("host", "content-length", "idempotency-key", "transfer-encoding")
_ABSOLUTE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|//)")


class HttpAction(Action):
    name = "http"
    destination_type = "http"
    rule_fields = {
        "to": Field("destination", required=True, help="a destination of type http"),
        "method": Field("text", help="GET, POST, PUT, PATCH or DELETE (default POST)"),
        "path": Field("text", help="appended to the destination's base_url"),
        "query": Field("json", help="query parameters"),
        "headers": Field("json", help="extra headers (the destination's headers win)"),
        "json": Field("json", help="a JSON body: a YAML structure whose string leaves are templates"),
        "body": Field("text", help="a raw body for non-JSON payloads"),
        "content_type": Field("text", help="Content-Type of a raw body (default text/plain; charset=utf-8)"),
        "retry": RETRY_FIELD,
    }
    destination_fields = {
        "base_url": Field("value", required=True), "allowed_hosts": Field("value"),
        "headers": Field("value", help="sent with every request; values may be ${ENV} secrets"),
        "timeout": Field("value", help="seconds for the whole attempt: connect, send and the whole answer "
                                      "(default 10)"),
        "connect_timeout": Field("value", help="connect timeout in seconds (default 5)"),
        "max_response_bytes": Field("value", help=f"response size cap (default {DEFAULT_MAX_RESPONSE_BYTES})"),
        "ca_file": Field("value", help="CA bundle for a private CA"), "proxy": Field("value"),
        "verify": Field("value", help="verify TLS certificates (default true)"),
    }

    def __init__(self, destination_name: str | None, destination: Mapping[str, Any] | None,
                 context: ActionContext) -> None:
        super().__init__(destination_name, destination, context)
        read = self.destination_reader()
        base = urlsplit(read.url("base_url", required=True) or "http://invalid.invalid")
        self.scheme, self.netloc, self.base_path = base.scheme, base.netloc, base.path.rstrip("/")
        self.hosts = {(base.hostname or "").lower()} | {h.lower() for h in read.text_list("allowed_hosts")}
        self.headers = read.headers("headers")
        self.timeout = (read.number("connect_timeout", 5.0, minimum=0.001), read.number("timeout", 10.0, minimum=0.001))
        self.max_response_bytes = int(read.number("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES,
                                                  minimum=1, whole=True))
        proxy = read.url("proxy")
        self.proxies = {"http": proxy, "https": proxy} if proxy else None
        self.verify: bool | str = read.text("ca_file") or read.boolean("verify", True)
        read.done()
        self.secrets = find_secrets(self.destination)
        make_safe(context.session)
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
        return problems

    def send(self, rendered: Mapping[str, Any], idempotency_key: str) -> None:
        method = str(rendered.get("method") or "POST").upper()
        if method not in METHODS:
            raise PermanentError(f"method {method!r} is not one of {', '.join(METHODS)}")
        url = self.url_for(str(rendered.get("path") or ""))
        self.check_address(urlsplit(url))
        exchange(self.context.session, method, url, secrets=self.secrets, timeout=self.timeout,
                 max_response_bytes=self.max_response_bytes, clock=self.context.clock,
                 params=rendered.get("query") or None, headers=self._headers(rendered, idempotency_key),
                 verify=self.verify, proxies=self.proxies, **self._body(rendered))

    def url_for(self, path: str) -> str:
        """The full URL for a rendered path; refuses any scheme or host the destination does not allow."""
        if any(c in path for c in "\\\r\n\t ") or any(ord(c) < 32 for c in path):
            raise PermanentError(f"refused path {path!r}: it contains whitespace, control characters or '\\'")
        if any(unquote(segment) in (".", "..") for segment in urlsplit(path).path.split("/")):
            raise PermanentError(f"refused path {path!r}: '.' and '..' segments could leave the base path")
        if _ABSOLUTE.match(path):
            url = path if "://" in path else f"{self.scheme}:{path}"
        else:
            url = f"{self.scheme}://{self.netloc}{self.base_path}/{path.lstrip('/')}" if path else \
                f"{self.scheme}://{self.netloc}{self.base_path}"
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme != self.scheme or host not in self.hosts or parts.username or parts.password:
            raise PermanentError(f"refused URL {url!r}: the destination {self.destination_name!r} allows only "
                                 f"{self.scheme}:// to {', '.join(sorted(self.hosts))} (add the host to "
                                 "allowed_hosts if it is meant to be called)")
        return url

    def check_address(self, parts: Any) -> None:
        """Resolve the host and refuse link-local / metadata addresses (the allow-list cannot open them)."""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            if self.proxies:
                return  # the proxy resolves names this host cannot; it must enforce its own policy
            raise RetryableError(f"cannot resolve {parts.hostname!r}: {exc.strerror or exc}") from None
        for info in infos:
            address = blocked(str(info[4][0]))
            if address is not None:
                raise PermanentError(f"refused: {parts.hostname!r} resolves to {address}, a link-local/metadata "
                                     "address idhooks never calls")

    def _headers(self, rendered: Mapping[str, Any], idempotency_key: str) -> dict[str, str]:
        extra = rendered.get("headers") or {}
        headers = {str(k): fold_line(v) for k, v in extra.items() if str(k).lower() not in _FORBIDDEN_HEADERS}
        if "json" not in rendered and rendered.get("body") is not None:
            headers["Content-Type"] = fold_line(rendered.get("content_type") or "text/plain; charset=utf-8")
        headers.update({k: str(reveal(v)) for k, v in self.headers.items()})
        headers["Idempotency-Key"] = idempotency_key
        return headers

    @staticmethod
    def _body(rendered: Mapping[str, Any]) -> dict[str, Any]:
        if "json" in rendered:
            return {"json": rendered["json"]}
        if rendered.get("body") is not None:
            return {"data": str(rendered["body"]).encode("utf-8")}
        return {}
