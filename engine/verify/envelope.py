"""Parse a verified body into a Security Event Token envelope (RFC 8417, WSO2 event profile v1).

Strict where the engine depends on it (UTF-8, strict JSON, string `jti`, numeric `iat` in milliseconds,
`events` an object of objects) and lenient everywhere else: unknown claims, unknown event URIs and extra
properties are kept, never an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from engine.errors import PayloadError

EVENT_URI_PREFIX = "https://schemas.identity.wso2.org/events/"
_IAT_END_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z: the first instant a datetime cannot hold


@dataclass(frozen=True)
class Envelope:
    jti: str
    iat_ms: float
    iss: str | None
    rci: str | None
    events: dict[str, dict[str, Any]]
    claims: dict[str, Any]  # the whole envelope as received

    @property
    def uris(self) -> tuple[str, ...]:
        return tuple(self.events)


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"invalid JSON: {name} is not allowed")


def parse_envelope(body: bytes) -> Envelope:
    """Decode and check `body`; PayloadError with a clear reason for anything the engine cannot use."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise PayloadError("invalid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise PayloadError("expected a JSON object (a Security Event Token), got " + type(data).__name__)
    return envelope_from_claims(data)


def envelope_from_claims(data: dict[str, Any]) -> Envelope:
    """Check the claims of an already-decoded SET (also used by replay and the offline tester)."""
    jti = data.get("jti")
    if not isinstance(jti, str) or not jti.strip():
        raise PayloadError("missing or empty 'jti': a Security Event Token needs a unique string jti")
    if len(jti) > 256:
        raise PayloadError("'jti' is longer than 256 characters")
    if any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in jti):
        # it is a key in every store: PostgreSQL text cannot hold NUL, and no UTF-8 encodes a lone surrogate
        raise PayloadError("'jti' contains a NUL character or an unpaired surrogate")
    iat = data.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)) or not math.isfinite(iat):
        raise PayloadError("missing or non-numeric 'iat': expected epoch milliseconds as a number")
    if not 0 <= iat < _IAT_END_MS:  # rules and templates turn it into a date
        raise PayloadError(f"'iat' {iat!r} is not a time: expected epoch milliseconds from 1970 to 9999")
    events = data.get("events")
    if not isinstance(events, dict) or not events:
        raise PayloadError("missing 'events': expected an object mapping event URIs to event bodies")
    for uri, body in events.items():
        if not isinstance(body, dict):
            raise PayloadError(f"event {uri[:200]!r}: expected an object as the event body")
    iss, rci = data.get("iss"), data.get("rci")
    return Envelope(jti=jti, iat_ms=float(iat), iss=iss if isinstance(iss, str) else None,
                    rci=rci if isinstance(rci, str) else None, events=events, claims=data)
