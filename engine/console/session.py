"""Console sessions without server state: after the token is given once, the cookie carries the token's name,
an expiry and a nonce, signed with HMAC-SHA256 keyed by the token itself. So a session ends when its token is
removed or changed in config.yaml (a reload), works across processes, and the cookie reveals no token.
The CSRF token of a session is another HMAC of its nonce; every state-changing form carries it."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from engine.api.auth import Caller, match_token
from engine.config.settings import ApiConfig, ApiToken

COOKIE = "idhooks_session"
LIFETIME = 8 * 3600
_COOKIE_SHAPE = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63})\.(\d{1,12})\.([0-9a-f]{32})\.([0-9a-f]{64})$")


@dataclass(frozen=True)
class Session:
    caller: Caller
    csrf: str


def _sign(token: ApiToken, message: str) -> str:
    return hmac.new(token.token.reveal().encode("utf-8", "surrogatepass"), message.encode(), hashlib.sha256).hexdigest()


def _session(token: ApiToken, nonce: str) -> Session:
    return Session(Caller(token.name, token.role), _sign(token, f"csrf|{nonce}")[:40])


def login(api: ApiConfig, presented: str, now: float) -> str | None:
    """The cookie value for a correct token, else None."""
    token = match_token(api, presented.strip())
    if token is None:
        return None
    expires, nonce = int(now + LIFETIME), secrets.token_hex(16)
    return f"{token.name}.{expires}.{nonce}.{_sign(token, f'session|{token.name}|{expires}|{nonce}')}"


def session_of(api: ApiConfig, cookie: str | None, now: float) -> Session | None:
    """The session a cookie proves, or None (absent, malformed, expired, forged, or its token is gone)."""
    match = _COOKIE_SHAPE.match(cookie or "")
    if match is None:
        return None
    name, expires, nonce, signature = match.groups()
    token = next((t for t in api.tokens if t.name == name), None)
    if token is None or int(expires) < now:
        return None
    if not hmac.compare_digest(signature, _sign(token, f"session|{name}|{expires}|{nonce}")):
        return None
    return _session(token, nonce)


def csrf_ok(session: Session, given: str | None) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                                                           session.csrf.encode())
