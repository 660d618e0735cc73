"""The stateful rule keys `threshold`, `suppress` and `digest`, parsed and checked at load time.

Parsing never stops at the first mistake: every problem is returned as `(line, "field.path: message")`
so the rules loader can prefix `file:line: rule 'id':` and report all of them at once. Group and distinct
keys stay as the strings the user wrote; the rules loader compiles them with its own path compiler, so a
key here means exactly what it means in a `when:` condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping

from engine.config.settings import suggest
from engine.config.durations import parse_duration
from engine.store.state import DEFAULT_LATE, DEFAULT_MAX_GROUPS, Threshold

Problem = tuple[int, str]

MAX_COUNT = 10_000
"""A window keeps fewer than `count` entries per group; this bounds the work per event."""
DEFAULT_MAX_ITEMS = 100

_THRESHOLD_KEYS = ("count", "within", "group_by", "distinct", "late", "max_groups")
_SUPPRESS_KEYS = ("for", "group_by")
_DIGEST_KEYS = ("every", "max_items", "late")


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

Report = Callable[[int, str, str], None]
"""report(line, where, message): collects one load problem (the rules loader's signature)."""


def _line(node: Any, key: Any) -> int:
    line_of = getattr(node, "line_of", None)
    return line_of(key) if line_of is not None else getattr(node, "line", 0)


class _Parser:
    """Reads the value of one stateful key (`key`, written on `line`), reporting every problem."""

    def __init__(self, key: str, value: Any, line: int, report: Report, allowed: tuple[str, ...]) -> None:
        self.key, self.line, self.report = key, line, report
        self.ok = isinstance(value, Mapping)
        self.node: Mapping[str, Any] = value if self.ok else {}
        if not self.ok:
            report(line, key, f"expected a mapping with keys {', '.join(allowed)}, got {value!r}")
        for name in self.node:
            if name not in allowed:
                report(_line(value, name), f"{key}.{name}",
                       f"unknown key{suggest(str(name), allowed)}; expected one of: {', '.join(allowed)}")

    def add(self, name: str, message: str) -> None:
        self.report(_line(self.node, name), f"{self.key}.{name}", message)

    def given(self, name: str, required: bool, what: str) -> bool:
        """Whether `name` is set; a missing required one is reported."""
        if name not in self.node and required:
            self.report(self.line, self.key, f"missing '{name}' ({what})")
        return name in self.node

    def duration(self, name: str, default: float | None, minimum: float = 0.001) -> float:
        if not self.given(name, default is None, "a duration like 30s, 10m, 1h"):
            return 1.0 if default is None else default
        try:
            seconds = parse_duration(self.node[name])
        except ValueError as exc:
            self.add(name, str(exc))
            return 1.0
        if seconds < minimum:
            self.add(name, f"must be at least {minimum:g}s, got {self.node[name]!r}")
        return seconds

    def integer(self, name: str, default: int | None, maximum: int) -> int:
        if not self.given(name, default is None, f"a whole number from 1 to {maximum}"):
            return 1 if default is None else default
        value = self.node[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            self.add(name, f"expected a whole number from 1 to {maximum}, got {value!r}")
            return 1
        return value

    def paths(self, name: str) -> tuple[str, ...] | None:
        if name not in self.node:
            return None
        value = self.node[name]
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(i, str) and i.strip() for i in items):
            self.add(name, f"expected a path or a list of paths like [claims.username], got {value!r}")
            return None
        return tuple(items)


def parse_threshold(value: Any, line: int, report: Report) -> Threshold | None:
    """The `threshold` key; None (after reporting) when it is unusable."""
    parser = _Parser("threshold", value, line, report, _THRESHOLD_KEYS)
    if not parser.ok:
        return None
    distinct = parser.paths("distinct")
    if distinct is not None and len(distinct) != 1:
        parser.add("distinct", f"expected one path like claims.username, got {parser.node['distinct']!r}")
    return Threshold(count=parser.integer("count", None, MAX_COUNT), within=parser.duration("within", None),
                     group_by=parser.paths("group_by") or (), distinct=distinct[0] if distinct else None,
                     late=parser.duration("late", DEFAULT_LATE, minimum=0),
                     max_groups=parser.integer("max_groups", DEFAULT_MAX_GROUPS, 10_000_000))


def parse_suppress(value: Any, line: int, report: Report) -> Suppress | None:
    """The `suppress` key; None (after reporting) when it is unusable."""
    parser = _Parser("suppress", value, line, report, _SUPPRESS_KEYS)
    if not parser.ok:
        return None
    return Suppress(for_=parser.duration("for", None), group_by=parser.paths("group_by"))


def parse_digest(value: Any, line: int, report: Report) -> Digest | None:
    """The `digest` key; None (after reporting) when it is unusable."""
    parser = _Parser("digest", value, line, report, _DIGEST_KEYS)
    if not parser.ok:
        return None
    return Digest(every=parser.duration("every", None, minimum=1),
                  max_items=parser.integer("max_items", DEFAULT_MAX_ITEMS, MAX_COUNT),
                  late=parser.duration("late", DEFAULT_LATE, minimum=0))


def check_combination(present: Collection[str], line: int, report: Report) -> None:
    """A digest already sends one message per period: it cannot also have a threshold or suppression."""
    if "digest" in present:
        for other in ("threshold", "suppress"):
            if other in present:
                report(line, "digest", f"cannot be combined with '{other}': a digest already sends one "
                                       "message per period")


def parse_stateful(rule: Mapping[str, Any]) -> tuple[StatefulSpec | None, list[Problem]]:
    """A whole rule's stateful keys (None when it has none) and every problem, as (line, "where: what")."""
    problems: list[Problem] = []

    def report(line: int, where: str, message: str) -> None:
        problems.append((line, f"{where}: {message}"))

    present = [key for key in STATEFUL_KEYS if key in rule]
    if not present:
        return None, []
    parsers = {"threshold": parse_threshold, "suppress": parse_suppress, "digest": parse_digest}
    values = {key: parsers[key](rule[key], _line(rule, key), report) for key in present}
    check_combination(present, _line(rule, "digest"), report)
    return StatefulSpec(**values), problems
