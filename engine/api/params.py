"""Reading query parameters and form fields that a caller chose: bounded, valid text, or a 422 that says what
was expected. Shared by the API and the console, so both accept and refuse exactly the same values."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Mapping

from engine.config.durations import parse_duration
from engine.errors import InvalidInputError
from engine.ops.events import DEFAULT_LIMIT, EVENT_STATUSES, MAX_LIMIT, EventQuery

MAX_PARAM_CHARS = 1024


def text(value: Any, name: str, max_chars: int = MAX_PARAM_CHARS, *, multiline: bool = False) -> str | None:
    """A text value, None when absent or empty; refuses lists (a repeated parameter), overlong values,
    control characters (but newlines and tabs when `multiline`) and text that is not valid Unicode (lone
    surrogates)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{name}: give it once, as text")
    if len(value) > max_chars:
        raise InvalidInputError(f"{name}: longer than {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{name}: not valid UTF-8 text") from None
    allowed = "\n\r\t" if multiline else ""
    if any((ord(c) < 32 or ord(c) == 127) and c not in allowed for c in value):
        raise InvalidInputError(f"{name}: control characters are not allowed")
    return value


def choice(value: Any, name: str, options: tuple[str, ...]) -> str | None:
    chosen = text(value, name)
    if chosen is not None and chosen not in options:
        raise InvalidInputError(f"{name}: expected one of {', '.join(options)}")
    return chosen


def limit(value: Any, default: int = DEFAULT_LIMIT) -> int:
    """A page size: a whole number >= 1; anything above MAX_LIMIT is MAX_LIMIT."""
    given = text(value, "limit")
    if given is None:
        return default
    if not given.isascii() or not given.isdigit() or int(given) < 1:
        raise InvalidInputError(f"limit: expected a whole number from 1 to {MAX_LIMIT}")
    return min(int(given), MAX_LIMIT)


def moment(value: Any, name: str, now: float) -> float | None:
    """A point in time: a duration back from now (`30m`, `7d`), an ISO 8601 time (`2026-01-05T10:00:00Z`)
    or epoch seconds."""
    given = text(value, name, 64)
    if given is None:
        return None
    try:
        return now - parse_duration(given)
    except ValueError:
        pass
    try:
        seconds = float(given)
        if math.isfinite(seconds) and 0 <= seconds < 253402300800:
            return seconds
    except ValueError:
        try:
            parsed = datetime.fromisoformat(given)
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
        except (ValueError, OverflowError):
            pass
    raise InvalidInputError(f"{name}: expected a duration back from now (30m, 7d), an ISO 8601 time "
                            "(2026-01-05T10:00:00Z) or epoch seconds")


def event_query(params: Mapping[str, Any], now: float) -> EventQuery:
    """The filters of GET /api/v1/events (and the console's events page)."""
    return EventQuery(type=text(params.get("type"), "type", 256), user=text(params.get("user"), "user", 256),
                      ip=text(params.get("ip"), "ip", 64), jti=text(params.get("jti"), "jti", 256),
                      status=choice(params.get("status"), "status", EVENT_STATUSES),
                      since=moment(params.get("since"), "since", now), until=moment(params.get("until"), "until", now))


def path_id(value: Any, name: str) -> str:
    """An id from the URL path ({jti}, {id}, {username}): valid text, at most 256 characters."""
    found = text(value, name, 256)
    if found is None:
        raise InvalidInputError(f"{name}: missing")
    return found
