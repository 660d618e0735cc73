"""One place that turns an HTTP exchange into delivered / retryable / permanent, for every HTTP action.

2xx: delivered. 429, 5xx, connection errors and timeouts: retryable, honouring `Retry-After`
(seconds or an HTTP date). 3xx: permanent, because redirects are never followed (a redirect could lead
to a host the destination does not allow). Other 4xx: permanent. Error messages and response snippets
have the destination's secrets replaced by `***`, since they are stored and shown by `idhooks deliveries`.

The request is prepared here (query encoding, JSON body, Content-Type) and sent by actions/httpclient.py,
which holds the connections and the outbound rules (peer check, deadline, answer bounds).
"""

from __future__ import annotations

import asyncio
import math
from abc import abstractmethod
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping
from urllib.parse import urlencode

from requests.utils import requote_uri

from actions.base import Action
from actions.deadline import deadline
from actions.httpclient import Answer, BadAnswerError, HttpClient, SlowAnswerError, remember
from actions.httplane import DeadlinePassedError, LaneClient
from engine import jsontext
from engine.errors import DeliveryError, PermanentError, RetryableError
from engine.secrets import Secret, redact

_QUOTED: dict[str, str] = {}
"""requote_uri() of the URLs sent last: a rule with a fixed path sends to one URL, and quoting it again for every
delivery was a tenth of the HTTP action's own time (issue 14)."""

SNIPPET_CHARS = 500
DEFAULT_MAX_RESPONSE_BYTES = 65_536

HttpResult = Answer
"""What an HTTP action gets back from `exchange`: status, reason, headers (any case) and the capped body."""


def exchange(client: HttpClient, method: str, url: str, *, secrets: list[Secret],
             timeout: tuple[float, float], max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
             clock: Callable[[], float], success_statuses: frozenset[int] = frozenset(),
             params: Mapping[str, Any] | None = None, headers: Mapping[str, str | bytes] | None = None,
             json: Any = None, data: bytes | None = None, verify: bool | str = True,
             proxy: str | None = None) -> HttpResult:
    """Send one request without following redirects and classify the answer; returns only on 2xx (or a
    status in `success_statuses`, e.g. 409 for a create whose first 201 was lost). `timeout` is (connect,
    total): the total bounds the whole exchange, connect + send + the whole answer (actions/deadline.py),
    also when the delivery worker's lease leaves less."""
    connect, total = timeout
    with deadline(total) as limit:
        budget = limit.remaining()
        try:
            target, body, sent_headers = prepare(url, params, headers, json, data)
            result = client.request(method, target, headers=sent_headers, body=body, connect_timeout=connect,
                                     limit=limit, max_response_bytes=max_response_bytes, verify=verify, proxy=proxy)
        except UnicodeError:  # text no request can carry (a lone surrogate): the worker makes it permanent
            raise
        except (BadAnswerError, OSError, SlowAnswerError, ValueError) as exc:
            raise _failure(exc, url, secrets, connect, budget, limit.passed) from None
    if result.status not in success_statuses:
        check(result, url, secrets, clock)
    return result


LANE_DEADLINE: ContextVar[float] = ContextVar("idhooks_lane_deadline", default=math.inf)
"""In the delivery lane (engine/deliver/lane.py), the loop time by which the running attempt must end (the
job's lease): exchange_async ends the exchange by then, or by its own `timeout`, whichever comes first."""


async def exchange_async(lane: LaneClient, method: str, url: str, *, secrets: list[Secret],
                         timeout: tuple[float, float], max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                         clock: Callable[[], float], success_statuses: frozenset[int] = frozenset(),
                         params: Mapping[str, Any] | None = None, headers: Mapping[str, str | bytes] | None = None,
                         json: Any = None, data: bytes | None = None, verify: bool | str = True,
                         proxy: str | None = None) -> HttpResult:
    """exchange() on the delivery lane's event loop: the same request, bounds, errors and classification."""
    connect, total = timeout
    loop = asyncio.get_running_loop()
    now = loop.time()
    expires = min(now + total, LANE_DEADLINE.get())
    budget = max(expires - now, 0.0)
    try:
        target, body, sent_headers = prepare(url, params, headers, json, data)
        result = await lane.request(method, target, headers=sent_headers, body=body, connect_timeout=connect,
                                    max_response_bytes=max_response_bytes, deadline=expires, verify=verify,
                                    proxy=proxy)
    except UnicodeError:
        raise
    except (BadAnswerError, OSError, SlowAnswerError, ValueError) as exc:
        raise _failure(exc, url, secrets, connect, budget, isinstance(exc, DeadlinePassedError)) from None
    if result.status not in success_statuses:
        check(result, url, secrets, clock)
    return result


@dataclass(frozen=True)
class HttpRequest:
    """The one request an HttpExchangeAction sends for a job: exchange()'s arguments besides the client."""

    method: str
    url: str
    options: Mapping[str, Any]


class HttpExchangeAction(Action):
    """An action that is one HTTP exchange per job (Slack, Teams, PagerDuty, Opsgenie, Splunk HEC, http): it says
    which request (`request()`) and what the answer means (`answered()`), and is sent the same way from a delivery
    thread (exchange) or on the delivery lane's event loop (exchange_async)."""

    sends_on_loop = True
    ends_by_lane_deadline = True  # every wait is exchange_async's, which ends by LANE_DEADLINE

    @abstractmethod
    def request(self, rendered: Mapping[str, Any], idempotency_key: str) -> HttpRequest:
        """The request for a rendered action; PermanentError for one that must not be sent."""

    def answered(self, rendered: Mapping[str, Any], result: HttpResult) -> Mapping[str, Any] | None:
        """Check a delivered (2xx) answer further, raising a DeliveryError, and return what it captured."""
        return None

    def send(self, rendered: Mapping[str, Any], idempotency_key: str) -> Mapping[str, Any] | None:
        return self.send_request(rendered, self.request(rendered, idempotency_key))

    async def send_async(self, rendered: Mapping[str, Any], idempotency_key: str,
                         lane: LaneClient) -> Mapping[str, Any] | None:
        return await self.send_request_async(rendered, self.request(rendered, idempotency_key), lane)

    def send_request(self, rendered: Mapping[str, Any], request: HttpRequest) -> Mapping[str, Any] | None:
        """Send `request` (made by request() for `rendered`) from a thread; what answered() makes of the answer."""
        return self.answered(rendered, exchange(self.context.http, request.method, request.url, **request.options))

    async def send_request_async(self, rendered: Mapping[str, Any], request: HttpRequest,
                                 lane: LaneClient) -> Mapping[str, Any] | None:
        """send_request() on the delivery lane's loop."""
        return self.answered(rendered, await exchange_async(lane, request.method, request.url, **request.options))


def _failure(exc: Exception, url: str, secrets: list[Secret], connect: float, budget: float,
             passed: bool) -> DeliveryError:
    """What a failed exchange means for the delivery (`passed`: the attempt's deadline had passed), in words
    that name the URL with its secrets redacted."""
    if isinstance(exc, BadAnswerError):
        return RetryableError(redact(f"cannot reach {url}: the answer is not valid HTTP: {exc}", secrets))
    if isinstance(exc, (OSError, SlowAnswerError)):  # TLS failures included
        if passed or isinstance(exc, SlowAnswerError):
            return RetryableError(redact(f"timed out calling {url}: deadline exceeded, no complete answer within "
                                         f"{round(budget, 1):g} s (connect, send and response)", secrets))
        if isinstance(exc, TimeoutError):
            return RetryableError(redact(f"timed out calling {url}: no connection within {connect:g} s", secrets))
        return RetryableError(redact(f"cannot reach {url}: {_reason(exc)}", secrets))
    return PermanentError(redact(f"invalid request to {url}: {exc}", secrets))  # refused before anything was sent


def prepare(url: str, params: Mapping[str, Any] | None, headers: Mapping[str, str | bytes] | None, json: Any,
            data: bytes | None) -> tuple[str, bytes | None, dict[str, str | bytes]]:
    """(URL with `params` added to its query, body, headers): unsafe characters of the URL percent-encoded
    (existing escapes kept), a JSON body strict (NaN and Infinity refused) with its Content-Type unless the
    caller gave one."""
    url = url.partition("#")[0]  # a fragment is never sent
    if params:
        pairs = [(str(name), item) for name, value in params.items()
                 for item in (value if isinstance(value, (list, tuple)) else [value]) if item is not None]
        base, _, query = url.partition("?")
        url = f"{base}?{query}&{urlencode(pairs)}" if query else f"{base}?{urlencode(pairs)}"
    quoted = _QUOTED.get(url)
    url = quoted if quoted is not None else remember(_QUOTED, url, requote_uri(url), len(url))
    sent = dict(headers or {})
    if json is not None:
        data = jsontext.dumps_bytes(json)
        if not any(name.lower() == "content-type" for name in sent):
            sent["Content-Type"] = "application/json"
    return url, data, sent


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


def _reason(exc: OSError) -> str:
    """What went wrong in a few words (e.g. 'Connection refused', 'certificate verify failed: ...')."""
    return str(exc.strerror or exc).split("] ")[-1][:200]
