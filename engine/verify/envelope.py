"""Parse a verified body into a Security Event Token envelope (RFC 8417, WSO2 event profile v1).

Strict where the engine depends on it (UTF-8, strict JSON, string `jti`, numeric `iat` in milliseconds,
`events` an object of objects) and lenient everywhere else: unknown claims, unknown event URIs and extra
properties are kept, never an error.

Whatever is accepted here is stored, evaluated, rendered into messages and written back as JSON, so a value
that one of those steps cannot take is refused here, anywhere in the body, with a PayloadError (400): a
number that is not finite (`1e999`, `NaN`, `Infinity`), an integer of more than MAX_INT_DIGITS digits,
a string (key or value) holding a lone UTF-16 surrogate (`"\\ud800"`), which no UTF-8 encoder takes, and
nesting deeper than MAX_DEPTH (copying or rendering it would exhaust the interpreter's recursion limit).
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from typing import Any

import orjson

from engine.errors import PayloadError

EVENT_URI_PREFIX = "https://schemas.identity.wso2.org/events/"
_IAT_END_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z: the first instant a datetime cannot hold
_IAT_SECONDS_BELOW = 100_000_000_000
"""An `iat` under this (1973-03-03 in milliseconds, the year 5138 in seconds) is a time in seconds."""
MAX_INT_DIGITS = 64
"""Longer integers are refused: far beyond any real claim, and SQLite's JSON functions turn integers of
more than ~308 digits into an infinity (Python refuses more than 4,300 digits with a ValueError)."""


@dataclass(frozen=True)
class Envelope:
    jti: str
    iat_ms: float
    iss: str | None
    rci: str | None
    events: dict[str, dict[str, Any]]
    claims: dict[str, Any]  # the whole envelope as received
    warnings: tuple[str, ...] = ()  # what was odd but usable, shown in the event's decision record

    @property
    def uris(self) -> tuple[str, ...]:
        return tuple(self.events)


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"invalid JSON: {name} is not allowed")


MAX_DEPTH = 32
"""Objects and arrays nested deeper are refused; a real event nests under ten levels."""


def _depth_exceeds(data: Any, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise PayloadError(f"number {text[:40]!r} is out of range: it would be stored as infinity")
    return value


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise PayloadError(f"integer of {len(text.lstrip('-'))} digits: at most {MAX_INT_DIGITS} are accepted")
    return int(text)


def _surrogate_path(value: Any, path: str = "$") -> str | None:
    """Where in `value` a string (key or value) holds a lone surrogate; None when nowhere."""
    stack = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if not node.isascii() and any("\ud800" <= ch <= "\udfff" for ch in node):
                return where
        elif isinstance(node, dict):
            for key, item in node.items():
                if any("\ud800" <= ch <= "\udfff" for ch in key):
                    return f"a key in {where}"
                stack.append((item, f"{where}.{key}"))
        elif isinstance(node, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(node))
    return None


def check_encodable(data: Any) -> None:
    """PayloadError unless every string of `data` can be written as UTF-8 (no lone surrogate)."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        where = (_surrogate_path(data) or "$").encode("utf-8", "backslashreplace").decode("utf-8")
        raise PayloadError(f"{where[:200]}: a string holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff "
                           "escape), which cannot be stored or sent") from None
    except RecursionError:
        raise PayloadError("invalid JSON: nested too deeply") from None


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float, parse_int=_parse_int)
"""One decoder for every body (json.loads with these hooks built a new one, and its scanner, per call)."""


_DIGITS_ONLY = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
"""bytes.translate table: every digit becomes '0', any other byte a space (see _fast_decode)."""
_LONG_RUN = b"0" * 19


def _fast_decode(body: bytes) -> Any:
    """`body` decoded by orjson when that gives exactly what _DECODER would: ~5 µs instead of ~11 µs for a 1.5 KB
    event, every intake pays it (issue 14). None when the standard library's decoder must have its say:
    - orjson refused the body: invalid UTF-8 or JSON, NaN or an infinity, a lone surrogate, nesting beyond its
      1,024 levels; _DECODER then refuses it with the reason (or takes it and the checks below refuse it);
    - a run of 19 or more digits anywhere, which may be an integer beyond 64 bits: orjson makes a float of
      those and _DECODER an int (or refuses one of more than MAX_INT_DIGITS digits).
    What orjson decodes is valid UTF-8 with no lone surrogate, so parse_envelope skips that check for it."""
    if _LONG_RUN in body.translate(_DIGITS_ONLY):
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _decode(body: bytes) -> Any:
    """`body` decoded by the standard library's decoder with idhooks's checks; PayloadError naming the fault."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise PayloadError("invalid JSON: nested too deeply") from None


def parse_envelope(body: bytes) -> Envelope:
    """Decode and check `body`; PayloadError with a clear reason for anything the engine cannot use."""
    data = _fast_decode(body)
    checked = data is not None  # orjson took it: valid UTF-8 without a lone surrogate
    if not checked:
        data = _decode(body)
    if not isinstance(data, dict):
        raise PayloadError("expected a JSON object (a Security Event Token), got " + type(data).__name__)
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _depth_exceeds(data, MAX_DEPTH):
        raise PayloadError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
    if not checked and b"\\u" in body:  # a lone surrogate can only come from an escape: the text is valid UTF-8
        check_encodable(data)
    return envelope_from_claims(data)


def envelope_from_claims(data: dict[str, Any]) -> Envelope:
    """Check the claims of an already-decoded SET (also used by replay and the offline tester)."""
    jti = data.get("jti")
    if not isinstance(jti, str) or not jti.strip():
        raise PayloadError("missing or empty 'jti': a Security Event Token needs a unique string jti")
    if len(jti) > 256:
        raise PayloadError("'jti' is longer than 256 characters")
    if "\x00" in jti:  # it is a key in every store, and PostgreSQL text cannot hold NUL
        raise PayloadError("'jti' contains a NUL character")
    iat = data.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)) or not math.isfinite(iat):
        raise PayloadError("missing or non-numeric 'iat': expected epoch milliseconds as a number")
    if not 0 <= iat < _IAT_END_MS:  # rules and templates turn it into a date
        raise PayloadError(f"'iat' {iat!r} is not a time: expected epoch milliseconds from 1970 to 9999")
    warnings: tuple[str, ...] = ()
    if 1_000_000_000 <= iat < _IAT_SECONDS_BELOW:
        warnings = (f"'iat' {iat!r} looks like epoch seconds, not milliseconds: read as {iat!r} seconds",)
        iat = iat * 1000
    events = data.get("events")
    if not isinstance(events, dict) or not events:
        raise PayloadError("missing 'events': expected an object mapping event URIs to event bodies")
    for uri, body in events.items():
        if not isinstance(body, dict):
            raise PayloadError(f"event {uri[:200]!r}: expected an object as the event body")
    iss, rci = data.get("iss"), data.get("rci")
    return Envelope(jti=jti, iat_ms=float(iat), iss=iss if isinstance(iss, str) else None,
                    rci=rci if isinstance(rci, str) else None, events=events, claims=data,
                    warnings=warnings)


class RecentEnvelopes:
    """Envelopes intake has just parsed, handed to the processor of the same process so that it need not
    parse the stored body again (a third of a no-rule event's processing, issue 14).

    Bounded (oldest dropped first) and a pure shortcut: the processor takes an entry only when the stored body
    is byte-for-byte the one parsed, and parses the body itself when there is none (another process's
    event, a restart, a retry, an entry dropped under load). An entry is taken once: a retry parses afresh."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._entries: dict[str, tuple[bytes, Envelope]] = {}
        self._lock = threading.Lock()

    def put(self, body: bytes, envelope: Envelope) -> None:
        with self._lock:
            self._entries[envelope.jti] = (body, envelope)
            if len(self._entries) > self.limit:
                del self._entries[next(iter(self._entries))]

    def take(self, jti: str, body: bytes) -> Envelope | None:
        with self._lock:
            entry = self._entries.pop(jti, None)
        return entry[1] if entry is not None and entry[0] == body else None

    def parse(self, jti: str, body: bytes) -> Envelope:
        """The envelope of a stored event: the one intake parsed, else parse_envelope(body)."""
        return self.take(jti, body) or parse_envelope(body)
