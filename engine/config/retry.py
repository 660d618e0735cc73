"""The `retry:` mapping (a destination's or a rule's override of `delivery:`'s retry policy), checked at
load. Here, in the config layer, so action plugins can check it without importing the delivery worker."""

from __future__ import annotations

from typing import Any, Mapping

from engine.config.durations import parse_duration
from engine.config.settings import suggest

RETRY_KEYS = {"retry_for": "retry_for", "backoff_initial": "initial", "backoff_max": "maximum"}
"""`retry:` key -> the RetryPolicy field it overrides (engine/deliver/backoff.py)."""


def policy_problems(node: Any, where: str) -> list[str]:
    """Problems of a `retry:` mapping, as `where.key: what is wrong` messages (empty when valid)."""
    if node is None:
        return []
    if not isinstance(node, Mapping):
        return [f"{where}: expected a mapping with retry_for, backoff_initial and/or backoff_max"]
    problems = []
    for key, value in node.items():
        if key not in RETRY_KEYS:
            problems.append(f"{where}.{key}: unknown key{suggest(str(key), tuple(RETRY_KEYS))}; "
                            f"expected one of: {', '.join(RETRY_KEYS)}")
            continue
        try:
            parse_duration(value)
        except ValueError as exc:
            problems.append(f"{where}.{key}: {exc}")
    return problems
