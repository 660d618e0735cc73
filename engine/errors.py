"""One exception tree for idhooks.

    IdhooksError (Exception)
    ├── ConfigError (ValueError)          config.yaml / rule files are wrong; carries every problem found
    ├── UsageError                        the command line is wrong: exit 2 with the command's usage line
    ├── RequestError (Exception)          an HTTP request we refuse; `status` is the HTTP status
    │   ├── SignatureError                401: missing, malformed or wrong signature
    │   ├── PayloadError                  400: not UTF-8, not JSON, not a SET envelope
    │   ├── TopicNotAgreedError           404: a hub verification for a topic the webhook does not agree to
    │   ├── UnsupportedMediaError         415: not application/json
    │   ├── TooLargeError                 413: body above server.max_body_bytes (or an API body bound)
    │   ├── UnauthorizedError             401: the API or console needs a valid token
    │   ├── ForbiddenError                403: the token's role may not do this
    │   ├── NotFoundError                 404: no such event, job or quarantine entry
    │   ├── InvalidInputError             422: a query parameter, form field or rule text is not acceptable
    │   ├── TooManyRequestsError          429: too many wrong tokens from one address; Retry-After says when
    │   └── BusyError                     503: the rule playground is at its limit of runs; try again
    ├── StoreError (RuntimeError)         the store cannot read or commit (503 on intake)
    └── DeliveryError (RuntimeError)      an action failed
        ├── RetryableError                try again later (connection errors, timeouts, 429, 5xx)
        └── PermanentError                never retry (other 4xx, invalid payload, auth failure)

Every error's `str()` is its message, written for the person who must fix it. The HTTP layer maps
`RequestError.status` and `.headers` in one place per app (engine/receive/app.py; the API and console:
engine/api/app.py); nothing else turns an exception into a status.
"""

from __future__ import annotations


class IdhooksError(Exception):
    """Base of every error idhooks raises on purpose."""


class ConfigError(IdhooksError, ValueError):
    """Config or rules are invalid. `problems` lists every message (file:line: what, suggestion)."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class UsageError(IdhooksError):
    """The command line itself is wrong (an option's value, a file or name an argument points to that is
    not there). `idhooks` prints the command's usage line and exits 2, as argparse does for what it checks."""


class RequestError(IdhooksError):
    """A request we refuse on purpose. The message is safe to send back to the caller."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the refusal needs besides its status (the HTTP layer sets them)."""
        return {}


class SignatureError(RequestError):
    status = 401


class PayloadError(RequestError):
    status = 400


class TopicNotAgreedError(RequestError):
    """The subscriber does not agree to this topic (WebSub: answer 404 with no echo)."""

    status = 404


class UnsupportedMediaError(RequestError):
    status = 415


class TooLargeError(RequestError):
    status = 413


class RequestTimeoutError(RequestError):
    """The request's body did not arrive in time (the async intake's body deadline)."""
    status = 408


class UnauthorizedError(RequestError):
    status = 401


class ForbiddenError(RequestError):
    status = 403


class NotFoundError(RequestError):
    status = 404


class InvalidInputError(RequestError):
    status = 422


class TooManyRequestsError(RequestError):
    """Refused for a while (engine/throttle.py); `retry_after` is the seconds until it may try again."""

    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class BusyError(RequestError):
    """Too busy for this request now; worth retrying in a few seconds (Retry-After)."""

    status = 503

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "2"}


class StoreError(IdhooksError, RuntimeError):
    """The store could not do what was asked (disk full, database locked too long, Redis down)."""


class DeliveryError(IdhooksError, RuntimeError):
    """An action could not be delivered."""

    def __init__(self, message: str, *, response_snippet: str = "") -> None:
        self.response_snippet = response_snippet
        super().__init__(message)


class RetryableError(DeliveryError):
    """Worth another attempt later; `retry_after` (seconds) honours a server's Retry-After."""

    def __init__(self, message: str, *, retry_after: float | None = None, response_snippet: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(message, response_snippet=response_snippet)


class PermanentError(DeliveryError):
    """Another attempt would fail the same way: dead-letter it."""
