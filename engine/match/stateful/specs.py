"""The stateful rule keys `threshold`, `suppress` and `digest`, parsed and checked at load time.

Parsing never stops at the first mistake: every problem goes to `report(line, "field.path", message)` so
the rules loader can prefix `file:line: rule 'id':` and report all of them at once. Group and distinct
keys stay as the strings the user wrote; the rules loader compiles them with its own path compiler, so a
key here means exactly what it means in a `when:` condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection

from engine.config.schema import Reader, Report
from engine.store.state import DEFAULT_LATE, DEFAULT_MAX_GROUPS, Threshold

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

def key_reader(key: str, value: Any, line: int, report: Report, allowed: tuple[str, ...]) -> Reader:
    """The schema reader of one stateful rule key's mapping (problems of the mapping itself at `line`)."""
    reader = Reader(value, key, report, line=line)
    if reader.expect_mapping(f"with keys {', '.join(allowed)}"):
        reader.check_keys(allowed)
    return reader


def key_paths(reader: Reader, name: str) -> tuple[str, ...] | None:
    """A group_by-like key: one path or a list of paths (None when absent or wrong)."""
    paths = reader.text_list(name, single=True, what="a path or a list of paths like [claims.username]")
    if paths is not None and not paths:
        reader.add(name, f"expected a path or a list of paths like [claims.username], got {reader.node[name]!r}")
        return None
    return tuple(paths) if paths else None


def parse_threshold(value: Any, line: int, report: Report) -> Threshold | None:
    """The `threshold` key; None (after reporting) when it is unusable."""
    read = key_reader("threshold", value, line, report, _THRESHOLD_KEYS)
    if not read.ok:
        return None
    distinct = key_paths(read, "distinct")
    if distinct is not None and len(distinct) != 1:
        read.add("distinct", f"expected one path like claims.username, got {read.node['distinct']!r}")
    return Threshold(count=read.integer("count", 1, minimum=1, maximum=MAX_COUNT, required=True),
                     within=read.duration("within", 1.0, minimum=0.001, required=True),
                     group_by=key_paths(read, "group_by") or (), distinct=distinct[0] if distinct else None,
                     late=read.duration("late", DEFAULT_LATE, minimum=0),
                     max_groups=read.integer("max_groups", DEFAULT_MAX_GROUPS, minimum=1, maximum=10_000_000))


def parse_suppress(value: Any, line: int, report: Report) -> Suppress | None:
    """The `suppress` key; None (after reporting) when it is unusable."""
    read = key_reader("suppress", value, line, report, _SUPPRESS_KEYS)
    if not read.ok:
        return None
    return Suppress(for_=read.duration("for", 1.0, minimum=0.001, required=True), group_by=key_paths(read, "group_by"))


def parse_digest(value: Any, line: int, report: Report) -> Digest | None:
    """The `digest` key; None (after reporting) when it is unusable."""
    read = key_reader("digest", value, line, report, _DIGEST_KEYS)
    if not read.ok:
        return None
    return Digest(every=read.duration("every", 1.0, minimum=1, required=True),
                  max_items=read.integer("max_items", DEFAULT_MAX_ITEMS, minimum=1, maximum=MAX_COUNT),
                  late=read.duration("late", DEFAULT_LATE, minimum=0))


def check_combination(present: Collection[str], line: int, report: Report) -> None:
    """A digest already sends one message per period: it cannot also have a threshold or suppression."""
    if "digest" in present:
        for other in ("threshold", "suppress"):
            if other in present:
                report(line, "digest", f"cannot be combined with '{other}': a digest already sends one "
                                       "message per period")
