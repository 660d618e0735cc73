"""Who is calling: a bearer token from `api.tokens`, compared in constant time (every configured token is
compared, whichever matches), and the role it carries. Token values are never logged or echoed; only the
token's `name` is used in logs and pages."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from engine.config.settings import ApiConfig, ApiToken
from engine.errors import ForbiddenError, UnauthorizedError

MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True)
class Caller:
    name: str
    role: str  # viewer | operator

    @property
    def operator(self) -> bool:
        return self.role == "operator"

    def require_operator(self, what: str) -> None:
        if not self.operator:
            raise ForbiddenError(f"token {self.name!r} is a viewer; {what} needs an operator token")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def match_token(api: ApiConfig, presented: str) -> ApiToken | None:
    """The configured token equal to `presented`, compared in constant time against every token."""
    given = _digest(presented[:MAX_TOKEN_CHARS])
    found = None
    for token in api.tokens:
        if hmac.compare_digest(given, _digest(token.token.reveal())) and len(presented) <= MAX_TOKEN_CHARS:
            found = token
    return found


def bearer_caller(api: ApiConfig, header: str | None) -> Caller:
    """The caller of an `Authorization: Bearer <token>` header; UnauthorizedError otherwise."""
    scheme, _, presented = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise UnauthorizedError("send Authorization: Bearer <token> with a token from api.tokens")
    token = match_token(api, presented.strip())
    if token is None:
        raise UnauthorizedError("the bearer token is not one of api.tokens")
    return Caller(token.name, token.role)
