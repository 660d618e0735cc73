"""The rule-key extension contract: how a module adds top-level rule keys (like `threshold:`) to the loader.

An extension is a value, passed to the loader explicitly (engine/match/extensions.py lists the built-in
ones); nothing registers itself by being imported. To add a rule key: write one module that defines a
`RuleExtension`, add it to RULE_EXTENSIONS, and read the compiled value from `Rule.extra[name]` where the
rule is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from engine.config.schema import Report

RuleKeyParser = Callable[[Any, int, Report], Any]
"""parse(raw YAML value, its line, report) -> the compiled value kept in Rule.extra[key]. Every problem
goes to report(line, "key.field", "what is wrong"); the return value is then ignored."""

RuleCheck = Callable[[Mapping[str, Any], Report], None]
"""check(rule mapping, report): problems spanning several keys of one rule (e.g. two keys that exclude
each other). The mapping is the YAML node: `getattr(node, "line_of")` gives a key's line."""


@dataclass(frozen=True)
class RuleKey:
    """One top-level rule key. The rule's actions may use `template_names` in their templates when the
    rule has the key (e.g. `count` for `threshold:`). A compiled value with `selectors` (and `events`)
    adds event types the rule is evaluated for (an absence's expected event); with `supplies_events` a
    rule with the key needs no `event:` (a sequence's steps give them)."""

    name: str
    parse: RuleKeyParser
    template_names: tuple[str, ...] = ()
    supplies_events: bool = False


@dataclass(frozen=True)
class RuleExtension:
    """A group of rule keys that belong together, with an optional check across them."""

    name: str
    keys: tuple[RuleKey, ...]
    check: RuleCheck | None = None
