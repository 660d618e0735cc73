"""The rule keys `sequence`, `new_value` and `absence`: parsed, checked and compiled at load, a
rule-key extension (MEMORY, listed in engine/match/extensions.py) like `threshold` (rulekeys.py), with the
same key paths (`claims.X`,
`envelope.X`, `geo.X`, `$...`, bare body paths) and the same error format.

    sequence:  {group_by, within, steps: [{event, when, count}], reset_on: {event, when}, max_groups}
    new_value: {of, group_by, lookback, learn_for, max_values, max_groups}
    absence:   {expect: {event, when}, group_by, within, max_timers}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from engine.match.conditions import Condition, Report, compile_condition
from engine.match.context import EvalContext
from engine.match.index import parse_selector, selector_keys
from engine.match.extension import RuleExtension, RuleKey
from engine.match.stateful.rulekeys import Lookup, _compile, _compile_group
from engine.config.schema import line_of
from engine.match.stateful.specs import MAX_COUNT, key_paths, key_reader

SEQUENCE_NAMES = ("steps", "group", "started")
NEW_VALUE_NAMES = ("value", "group", "group_since")
ABSENCE_NAMES = ("within", "expired_at", "group")
MEMORY_KEYS = ("sequence", "new_value", "absence")

MAX_STEPS = 20
DEFAULT_MAX_GROUPS = 100_000
DEFAULT_MAX_VALUES = 1_000
DEFAULT_MAX_TIMERS = 1_000_000

_SEQUENCE_KEYS = ("group_by", "within", "steps", "reset_on", "max_groups")
_STEP_KEYS = ("event", "when", "count")
_MATCH_KEYS = ("event", "when")
_NEW_VALUE_KEYS = ("of", "group_by", "lookback", "learn_for", "max_values", "max_groups")
_ABSENCE_KEYS = ("expect", "group_by", "within", "max_timers")


@dataclass(frozen=True)
class EventMatch:
    """`{event: ..., when: ...}` inside a key: a sequence step, a reset_on or an absence's expect."""

    events: tuple[str, ...]
    selectors: tuple[tuple[str, str], ...]
    condition: Condition | None = None
    count: int = 1

    def holds(self, ctx: EvalContext) -> bool:
        if not any(key in self.selectors for key in selector_keys(ctx.uri)):
            return False
        return self.condition is None or self.condition.test(ctx) is None


def _event_match(value: Any, where: str, line: int, report: Report, allowed: tuple[str, ...]) -> EventMatch | None:
    parser = key_reader(where, value, line, report, allowed)
    if not parser.ok:
        return None
    if "event" not in parser.node:
        report(line, where, "missing 'event' (an alias like login.loginFailed, a URI or a list of these)")
        return None
    raw = parser.node["event"]
    values = raw if isinstance(raw, list) and raw else [raw]
    selectors = []
    for value_ in values:
        try:
            selectors.append(parse_selector(value_))
        except ValueError as exc:
            parser.add("event", str(exc))
    condition = None
    if parser.node.get("when") is not None:
        condition = compile_condition(parser.node["when"], f"{where}.when", report)
    count = parser.integer("count", 1, minimum=1, maximum=MAX_COUNT) if "count" in allowed else 1
    if len(selectors) != len(values):
        return None
    return EventMatch(tuple(str(v) for v in values), tuple(selectors), condition, count)


@dataclass(frozen=True)
class CompiledSequence:
    steps: tuple[EventMatch, ...]
    within: float
    group_by: tuple[str, ...]
    group: tuple[Lookup, ...]
    reset_on: EventMatch | None
    max_groups: int

    @property
    def events(self) -> tuple[str, ...]:
        matches = self.steps + ((self.reset_on,) if self.reset_on else ())
        return tuple(event for match in matches for event in match.events)

    @property
    def selectors(self) -> tuple[tuple[str, str], ...]:
        matches = self.steps + ((self.reset_on,) if self.reset_on else ())
        return tuple(selector for match in matches for selector in match.selectors)

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """The steps' and reset_on's `when`s (condition coverage counts them)."""
        matches = self.steps + ((self.reset_on,) if self.reset_on else ())
        return tuple(match.condition for match in matches if match.condition is not None)


def parse_sequence(value: Any, line: int, report: Report) -> CompiledSequence | None:
    parser = key_reader("sequence", value, line, report, _SEQUENCE_KEYS)
    if not parser.ok:
        return None
    within = parser.duration("within", 1.0, minimum=0.001, required=True)
    group_by = key_paths(parser, "group_by") or ()
    steps_raw = parser.node.get("steps")
    if not isinstance(steps_raw, list) or not 2 <= len(steps_raw) <= MAX_STEPS:
        report(line_of(parser.node, "steps") if "steps" in parser.node else line, "sequence.steps",
               f"expected a list of 2 to {MAX_STEPS} steps like {{event: login.loginFailed, count: 3}}, "
               f"got {steps_raw!r}"[:300])
        steps_raw = []
    steps = [_event_match(step, f"sequence.steps[{i}]", line_of(steps_raw, i), report, _STEP_KEYS)
             for i, step in enumerate(steps_raw)]
    reset_on = None
    if "reset_on" in parser.node:
        reset_on = _event_match(parser.node["reset_on"], "sequence.reset_on", line_of(parser.node, "reset_on"),
                                report, _MATCH_KEYS)
    group = _compile_group(group_by, "sequence.group_by", line, report)
    max_groups = parser.integer("max_groups", DEFAULT_MAX_GROUPS, minimum=1, maximum=10_000_000)
    if any(step is None for step in steps) or not steps:
        return None
    return CompiledSequence(tuple(steps), within, group_by, group, reset_on, max_groups)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CompiledNewValue:
    of: str
    value: Lookup
    group_by: tuple[str, ...]
    group: tuple[Lookup, ...]
    lookback: float
    learn_for: float
    max_values: int
    max_groups: int


def parse_new_value(value: Any, line: int, report: Report) -> CompiledNewValue | None:
    parser = key_reader("new_value", value, line, report, _NEW_VALUE_KEYS)
    if not parser.ok:
        return None
    of = key_paths(parser, "of")
    if "of" not in parser.node:
        report(line, "new_value", "missing 'of' (the path whose new values fire the rule, like geo.country)")
    elif of is not None and len(of) != 1:
        parser.add("of", f"expected one path like geo.country, got {parser.node['of']!r}")
    lookup = _compile(of[0], "new_value.of", line, report) if of and len(of) == 1 else None
    group_by = key_paths(parser, "group_by") or ()
    group = _compile_group(group_by, "new_value.group_by", line, report)
    compiled = CompiledNewValue(of[0] if of else "", lookup, group_by, group,  # type: ignore[arg-type]
                                lookback=parser.duration("lookback", 1.0, minimum=1, required=True),
                                learn_for=parser.duration("learn_for", 0.0, minimum=0),
                                max_values=parser.integer("max_values", DEFAULT_MAX_VALUES, minimum=1, maximum=100_000),
                                max_groups=parser.integer("max_groups", DEFAULT_MAX_GROUPS, minimum=1, maximum=10_000_000))
    return compiled if lookup is not None else None


@dataclass(frozen=True)
class CompiledAbsence:
    expect: EventMatch
    group_by: tuple[str, ...]
    group: tuple[Lookup, ...]
    within: float
    max_timers: int

    @property
    def events(self) -> tuple[str, ...]:
        return self.expect.events

    @property
    def selectors(self) -> tuple[tuple[str, str], ...]:
        return self.expect.selectors

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return (self.expect.condition,) if self.expect.condition is not None else ()


def parse_absence(value: Any, line: int, report: Report) -> CompiledAbsence | None:
    parser = key_reader("absence", value, line, report, _ABSENCE_KEYS)
    if not parser.ok:
        return None
    expect = None
    if "expect" not in parser.node:
        report(line, "absence", "missing 'expect' (the event that must follow, like {event: login.loginSuccess})")
    else:
        expect = _event_match(parser.node["expect"], "absence.expect", line_of(parser.node, "expect"), report,
                              _MATCH_KEYS)
    group_by = key_paths(parser, "group_by")
    if group_by is None and "group_by" not in parser.node:
        report(line, "absence", "missing 'group_by' (the key both events share, like [user_id])")
    group = _compile_group(group_by or (), "absence.group_by", line, report)
    within = parser.duration("within", 1.0, minimum=1, required=True)
    max_timers = parser.integer("max_timers", DEFAULT_MAX_TIMERS, minimum=1, maximum=100_000_000)
    if expect is None or not group_by:
        return None
    return CompiledAbsence(expect, group_by, group, within, max_timers)


def _combination(node: Mapping[str, Any], report: Report) -> None:
    """One memory key per rule, none with threshold or digest; a sequence takes its events from its steps."""
    present = [key for key in MEMORY_KEYS if key in node]
    if not present:
        return
    line_of = getattr(node, "line_of", lambda key: 0)
    first = present[0]
    for other in present[1:] + [key for key in ("threshold", "digest") if key in node]:
        report(line_of(other), other, f"cannot be combined with '{first}' in one rule; write two rules")
    if first == "sequence" and "event" in node:
        report(line_of("event"), "event", "a sequence rule takes its events from sequence.steps; remove `event`")


MEMORY = RuleExtension("detections", (RuleKey("sequence", parse_sequence, SEQUENCE_NAMES, supplies_events=True),
                                       RuleKey("new_value", parse_new_value, NEW_VALUE_NAMES),
                                       RuleKey("absence", parse_absence, ABSENCE_NAMES)), _combination)
"""The keys sequence, new_value and absence, passed to the rule loader (engine/match/extensions.py)."""
