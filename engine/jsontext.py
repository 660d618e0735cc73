"""Strict JSON text, written fast: what the store records (decisions, job payloads) and what HTTP actions send.

Strict means what the standard library's `json.JSONEncoder(allow_nan=False)` accepts: NaN and Infinity are
refused (ValueError), and so are values JSON has no type for (TypeError). Why not that encoder alone: it cost
3.6 µs for a job's small payload, and a delivered event is encoded three times (its decisions, its job, the
request body), ~10 µs of it (issue 14). orjson writes the same payload in 0.3 µs. It differs from the standard
library in these ways, so its text is used only when none can apply:
- it writes NaN and Infinity as `null` instead of refusing them: text holding `null` anywhere is written again
  by the standard library, which refuses them (a real null pays for that second pass; events rarely hold one);
- it refuses what the standard library writes (a lone surrogate, an integer beyond 64 bits, a key that is not
  a string): the standard library writes those;
- it writes dates and dataclasses, which the standard library refuses: passed through, so they are refused too;
- it writes UUIDs and plain enum members as strings, which the standard library refuses (orjson has no option to
  pass them through): what idhooks writes here (decisions, rendered messages) holds only JSON's own types, and
  a plugin that put one in would get valid JSON text, not a refusal.
Its text is compact and UTF-8 (`{"a":"é"}`), the standard library's spaced and ASCII (`{"a": "\\u00e9"}`): the
same JSON value.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_STRICT = json.JSONEncoder(allow_nan=False)
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _fast(value: Any) -> bytes | None:
    """orjson's text when it is certainly what the standard library would accept; None otherwise."""
    try:
        text = orjson.dumps(value, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: see the module docstring
        return None
    return None if b"null" in text else text


def dumps(value: Any) -> str:
    """`value` as strict JSON text; ValueError (NaN, Infinity) or TypeError (no JSON type) otherwise."""
    text = _fast(value)
    return text.decode("utf-8") if text is not None else _STRICT.encode(value)


def dumps_bytes(value: Any) -> bytes:
    """dumps() in UTF-8."""
    text = _fast(value)
    return text if text is not None else _STRICT.encode(value).encode("utf-8")


def certainly_finite(value: Any) -> bool:
    """True when `value` holds no NaN or Infinity float, as far as one fast pass can tell; False may be wrong
    (a null, a lone surrogate, ...): then walk it."""
    return _fast(value) is not None
