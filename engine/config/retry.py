"""The `retry:` mapping (a destination's or a rule's override of `delivery:`'s retry policy), checked at
load. Here, in the config layer, so action plugins can check it without importing the delivery worker."""

from __future__ import annotations

from typing import Any

from engine.config.schema import Reader, line_of

RETRY_KEYS = {"retry_for": "retry_for", "backoff_initial": "initial", "backoff_max": "maximum"}
"""`retry:` key -> the RetryPolicy field it overrides (engine/deliver/backoff.py)."""


def check_retry(parent: Reader, key: str = "retry") -> None:
    """Report every problem of the `retry:` mapping under `key` of `parent` (nothing when absent)."""
    if key not in parent.node or parent.node[key] is None:
        return
    read = Reader(parent.node[key], parent.path(key), parent.report, line=line_of(parent.raw, key))
    if not read.ok:
        read.add(None, "expected a mapping with retry_for, backoff_initial and/or backoff_max")
        return
    for name in read.node:  # in the order written
        if name in RETRY_KEYS:
            read.duration(name, None)
        else:
            read.unknown_key(name, tuple(RETRY_KEYS))


def policy_problems(node: Any, where: str) -> list[str]:
    """Problems of a `retry:` mapping, as `where.key: what is wrong` messages (empty when valid), for an
    action's check_rule_fields()."""
    problems: list[str] = []
    check_retry(Reader({where: node}, "", lambda line, path, message: problems.append(f"{path}: {message}")),
                where)
    return problems
