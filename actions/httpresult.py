"""One place that turns an HTTP exchange into delivered / retryable / permanent, for every HTTP action.

2xx: delivered. 429, 5xx, connection errors and timeouts: retryable, honouring `Retry-After`
(seconds or an HTTP date). 3xx: permanent, because redirects are never followed (a redirect could lead
to a host the destination does not allow). Other 4xx: permanent. Error messages and response snippets
have the destination's secrets replaced by `***`, since they are stored and shown by `idhooks deliveries`.

A request is prepared here and handed straight to the session's adapter (`Session.send` is not used):
the session contributes its mounted adapters (actions/safenet.py's guarded one), its default headers, its
`verify`/`cert`/`proxies` defaults and its response hooks, never cookies, netrc or environment settings. This skips what a
delivery never needs (cookie jars, hooks, redirect bookkeeping, setting merges), which was most of the
client-side CPU of a send (README, issue 14). Cookies a target sets are not sent back on later calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping

import requests
from requests.hooks import dispatch_hook

from actions.deadline import Deadline, deadline
from engine.errors import PermanentError, RetryableError
from engine.secrets import Secret, redact

SNIPPET_CHARS = 500
DEFAULT_MAX_RESPONSE_BYTES = 65_536


@dataclass(frozen=True)
class HttpResult:
    """A finished exchange: status, headers and at most `max_response_bytes` of the body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def exchange(session: requests.Session, method: str, url: str, *, secrets: list[Secret],
             timeout: tuple[float, float], max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
             clock: Callable[[], float], success_statuses: frozenset[int] = frozenset(),
             params: Mapping[str, Any] | None = None, headers: Mapping[str, str | bytes] | None = None,
             json: Any = None, data: bytes | None = None, verify: bool | str | None = None,
             proxies: Mapping[str, str] | None = None) -> HttpResult:
    """Send one request without following redirects and classify the answer; returns only on 2xx (or a
    status in `success_statuses`, e.g. 409 for a create whose first 201 was lost). `timeout` is (connect,
    total): the total bounds the whole exchange, connect + send + the whole answer (actions/deadline.py),
    also when the delivery worker's lease leaves less."""
    connect, total = timeout
    with deadline(total) as limit:
        budget = limit.remaining()
        try:
            request = prepare(session, method, url, params, headers, json, data)
            adapter = session.get_adapter(str(request.url))
            with adapter.send(request, stream=True, timeout=(min(connect, limit.remaining()), limit.remaining()),
                              verify=session.verify if verify is None else verify, cert=session.cert,
                              proxies=dict(session.proxies if proxies is None else proxies)) as response:
                dispatch_hook("response", session.hooks, response)  # `idhooks destinations test` shows the answer
                result = HttpResult(response.status_code, response.headers,
                                    read_capped(response, max_response_bytes, limit))
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            if limit.passed or isinstance(exc, requests.ReadTimeout):  # the read timeout is what remained
                raise RetryableError(redact(f"timed out calling {url}: deadline exceeded, no complete answer within "
                                            f"{round(budget, 1):g} s (connect, send and response)", secrets)) from None
            if isinstance(exc, requests.Timeout):
                raise RetryableError(redact(f"timed out calling {url}: {type(exc).__name__}", secrets)) from None
            raise RetryableError(redact(f"cannot reach {url}: {_reason(exc)}", secrets)) from None
        except requests.RequestException as exc:
            raise PermanentError(redact(f"invalid request to {url}: {exc}", secrets)) from None
    if result.status not in success_statuses:
        check(result, url, secrets, clock)
    return result


def prepare(session: requests.Session, method: str, url: str, params: Mapping[str, Any] | None,
            headers: Mapping[str, str | bytes] | None, json: Any, data: bytes | None) -> requests.PreparedRequest:
    """The request as requests would prepare it (URL and query encoding, header validation, JSON body,
    Content-Length, credentials of a user:password@ URL) with the session's default headers under
    `headers`; no cookies, hooks or netrc."""
    request = requests.PreparedRequest()
    request.prepare_method(method)
    request.prepare_url(url, params)
    request.prepare_headers({**session.headers, **(headers or {})})
    request.prepare_body(data, None, json)
    request.prepare_auth(None, url)
    return request


def read_capped(response: requests.Response, limit: int, until: Deadline | None = None) -> bytes:
    """At most `limit` bytes of the body, so a huge or endless answer cannot exhaust memory; reading stops
    with a ConnectionError when `until` passes (its watchdog also cuts a read that is blocked)."""
    chunks, size = [], 0
    for chunk in response.iter_content(chunk_size=8192):
        if until is not None and until.passed:
            raise requests.ConnectionError("deadline exceeded while reading the answer")
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def check(result: HttpResult, url: str, secrets: list[Secret], clock: Callable[[], float]) -> None:
    """Raise RetryableError / PermanentError unless the status is 2xx."""
    status = result.status
    if 200 <= status < 300:
        return
    shown = snippet(result.text(), secrets)
    where = redact(url, secrets)
    if status == 429 or status >= 500:
        raise RetryableError(f"{where} answered {status}{_brief(shown)}",
                             retry_after=retry_after(result.headers.get("Retry-After"), clock()),
                             response_snippet=shown)
    if 300 <= status < 400:
        target = redact(result.headers.get("Location", "?"), secrets)
        raise PermanentError(f"{where} answered {status} redirect to {target}; redirects are not followed",
                             response_snippet=shown)
    raise PermanentError(f"{where} answered {status}{_brief(shown)}", response_snippet=shown)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(parsedate_to_datetime(value).timestamp() - now, 0.0)
    except (TypeError, ValueError):
        return None


def snippet(text: str, secrets: list[Secret]) -> str:
    """The start of a response body, secrets redacted, for the dead-letter list."""
    return redact(text, secrets)[:SNIPPET_CHARS]


def _brief(shown: str) -> str:
    first = shown.strip().splitlines()[0][:120] if shown.strip() else ""
    return f": {first}" if first else ""


def _reason(exc: BaseException) -> str:
    """The innermost cause of a connection error (e.g. 'Connection refused'), not urllib3's long chain."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__ or exc
    return str(getattr(exc, "strerror", None) or exc).split("] ")[-1]
