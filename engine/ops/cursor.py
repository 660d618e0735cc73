"""Opaque page cursors: the (time, id) of the last row a page showed, as URL-safe base64 of JSON. A cursor
that does not decode to exactly that shape is refused with a 422, never guessed at."""

from __future__ import annotations

import base64
import binascii
import json
import math

from engine.errors import InvalidInputError

MAX_CURSOR_CHARS = 512


def encode(at: float, ident: str) -> str:
    raw = json.dumps([at, ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None) -> tuple[float, str] | None:
    """(time, id) of a cursor from `encode`, None for no cursor; InvalidInputError for anything else."""
    if cursor is None or cursor == "":
        return None
    if len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidInputError("cursor: too long; pass back the `next` value of the previous page unchanged")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, ident = json.loads(raw.decode("utf-8"))
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at) \
                or not isinstance(ident, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInputError("cursor: not a cursor of this listing; pass back the `next` value of the "
                                "previous page unchanged") from None
    return float(at), ident
