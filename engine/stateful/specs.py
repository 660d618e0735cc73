"""The stateful rule keys `threshold`, `suppress` and `digest`, parsed and checked at load time.

Parsing never stops at the first mistake: every problem is returned as `(line, "field.path: message")`
so the rules loader can prefix `file:line: rule 'id':` and report all of them at once. Group and distinct
keys stay as the strings the user wrote; the rules loader compiles them with its own path compiler, so a
key here means exactly what it means in a `when:` condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from engine.config import suggest
from engine.durations import parse_duration

Problem = tuple[int, str]

MAX_COUNT = 10_000
"""A window keeps fewer than `count` entries per group; this bounds the work per event."""
DEFAULT_LATE = 60.0
"""How late (arrival minus event time) an event may be and still count; the hub retries within ~20 s."""
DEFAULT_MAX_GROUPS = 100_000
DEFAULT_MAX_ITEMS = 100

_THRESHOLD_KEYS = ("count", "within", "group_by", "distinct", "late", "max_groups")
_SUPPRESS_KEYS = ("for", "group_by")
_DIGEST_KEYS = ("every", "max_items", "late")


@dataclass(frozen=True)
class Threshold:
    """Fire when `count` events (or distinct values of `distinct`) of one group fall within `within` s."""

    count: int
    within: float
    group_by: tuple[str, ...] = ()
    distinct: str | None = None
    late: float = DEFAULT_LATE
    max_groups: int = DEFAULT_MAX_GROUPS


@dataclass(frozen=True)
class Suppress:
    """After a firing, no repeat for the same group for `for_` seconds. `group_by` None = the threshold's
    groups, or one group for the whole rule when the rule has no threshold."""

    for_: float
    group_by: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Digest:
    """Collect matches into periods of `every` seconds; one firing per period with up to `max_items`."""

    every: float
    max_items: int = DEFAULT_MAX_ITEMS
    late: float = DEFAULT_LATE


@dataclass(frozen=True)
class StatefulSpec:
    """The stateful keys of one rule (each None when absent)."""

    threshold: Threshold | None = None
    suppress: Suppress | None = None
    digest: Digest | None = None

    @property
    def group_by(self) -> tuple[str, ...]:
        """The keys that name a group for suppression (and the threshold's own groups)."""
        if self.suppress is not None and self.suppress.group_by is not None:
            return self.suppress.group_by
        return self.threshold.group_by if self.threshold else ()


STATEFUL_KEYS = ("threshold", "suppress", "digest")


def _line(node: Any, key: Any = None) -> int:
    line_of = getattr(node, "line_of", None)
    if key is not None and line_of is not None:
        return line_of(key)
    return getattr(node, "line", 0)


class _Parser:
    """Reads one rule's stateful keys, collecting problems."""

    def __init__(self, rule: Mapping[str, Any]) -> None:
        self.rule = rule
        self.problems: list[Problem] = []

    def add(self, node: Any, key: Any, where: str, message: str) -> None:
        self.problems.append((_line(node, key), f"{where}: {message}"))

    def mapping(self, key: str, allowed: tuple[str, ...]) -> Mapping[str, Any] | None:
        node = self.rule.get(key)
        if not isinstance(node, Mapping):
            self.add(self.rule, key, key, f"expected a mapping with keys {', '.join(allowed)}, got {node!r}")
            return None
        for name in node:
            if name not in allowed:
                self.add(node, name, f"{key}.{name}",
                         f"unknown key{suggest(name, allowed)}; expected one of: {', '.join(allowed)}")
        return node

    def duration(self, node: Mapping[str, Any], key: str, where: str, default: float | None,
                 minimum: float = 0.001) -> float:
        if key not in node:
            if default is None:
                self.add(self.rule, where, where, f"missing '{key}' (a duration like 30s, 10m, 1h)")
                return 1.0
            return default
        try:
            seconds = parse_duration(node[key])
        except ValueError as exc:
            self.add(node, key, f"{where}.{key}", str(exc))
            return 1.0
        if seconds < minimum:
            self.add(node, key, f"{where}.{key}", f"must be at least {minimum:g}s, got {node[key]!r}")
        return seconds

    def integer(self, node: Mapping[str, Any], key: str, where: str, default: int | None,
                maximum: int) -> int:
        if key not in node:
            if default is None:
                self.add(self.rule, where, where, f"missing '{key}' (a whole number from 1 to {maximum})")
                return 1
            return default
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            self.add(node, key, f"{where}.{key}", f"expected a whole number from 1 to {maximum}, got {value!r}")
            return 1
        return value

    def keys(self, node: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
        if key not in node:
            return None
        value = node[key]
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(i, str) and i.strip() for i in items):
            self.add(node, key, f"{where}.{key}",
                     f"expected a path or a list of paths like [claims.username], got {value!r}")
            return None
        return tuple(items)

    def threshold(self) -> Threshold | None:
        node = self.mapping("threshold", _THRESHOLD_KEYS)
        if node is None:
            return None
        distinct = node.get("distinct")
        if distinct is not None and not (isinstance(distinct, str) and distinct.strip()):
            self.add(node, "distinct", "threshold.distinct", f"expected one path like claims.username, got {distinct!r}")
            distinct = None
        return Threshold(count=self.integer(node, "count", "threshold", None, MAX_COUNT),
                         within=self.duration(node, "within", "threshold", None),
                         group_by=self.keys(node, "group_by", "threshold") or (), distinct=distinct,
                         late=self.duration(node, "late", "threshold", DEFAULT_LATE, minimum=0),
                         max_groups=self.integer(node, "max_groups", "threshold", DEFAULT_MAX_GROUPS, 10_000_000))

    def suppress(self) -> Suppress | None:
        node = self.mapping("suppress", _SUPPRESS_KEYS)
        if node is None:
            return None
        return Suppress(for_=self.duration(node, "for", "suppress", None), group_by=self.keys(node, "group_by", "suppress"))

    def digest(self) -> Digest | None:
        node = self.mapping("digest", _DIGEST_KEYS)
        if node is None:
            return None
        return Digest(every=self.duration(node, "every", "digest", None, minimum=1),
                      max_items=self.integer(node, "max_items", "digest", DEFAULT_MAX_ITEMS, MAX_COUNT),
                      late=self.duration(node, "late", "digest", DEFAULT_LATE, minimum=0))


def parse_stateful(rule: Mapping[str, Any]) -> tuple[StatefulSpec | None, list[Problem]]:
    """The rule's stateful keys (None when it has none) and every problem found, as (line, message)."""
    present = [key for key in STATEFUL_KEYS if key in rule]
    if not present:
        return None, []
    parser = _Parser(rule)
    spec = StatefulSpec(threshold=parser.threshold() if "threshold" in rule else None,
                        suppress=parser.suppress() if "suppress" in rule else None,
                        digest=parser.digest() if "digest" in rule else None)
    if spec.digest is not None and (spec.threshold is not None or spec.suppress is not None):
        other = "threshold" if spec.threshold is not None else "suppress"
        parser.add(rule, "digest", "digest",
                   f"cannot be combined with '{other}': a digest already sends one message per period")
    return spec, parser.problems
