"""Topic patterns of `webhooks[].topics`: globs where `*` matches any characters, dots included."""

from __future__ import annotations

import fnmatch
from typing import Iterable


def topic_allowed(topic: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(topic, pattern) for pattern in patterns)
