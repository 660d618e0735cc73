"""The stateful keys in the rules engine: `threshold`, `suppress` and `digest`, a rule-key extension
(STATEFUL, listed in engine/match/extensions.py). Their group_by / distinct paths are compiled to lookups
at load, like every other path of a rule.

Key paths: `claims.X` (a claim by short name or URI), `envelope.X` (the SET envelope: iss, jti, rci),
`geo.X` (IP enrichment: country, country_name, asn, as_org), `$...` (JSONPath on the event body), the
template names `user_id`, `username` and `ip`, or a bare dotted body path such as `initiatorIpAddress`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from engine.match.conditions import Report, subject_lookup
from engine.match.context import EvalContext
from engine.match.extension import RuleExtension, RuleKey
from engine.match.ruleset import Rule
from engine.match.stateful.decide import Observation
from engine.match.stateful.specs import (STATEFUL_KEYS, Digest, StatefulSpec, Suppress, Threshold, check_combination,
                                   parse_digest, parse_suppress, parse_threshold)

THRESHOLD_NAMES = ("count", "window", "group", "first_seen", "last_seen", "events")
DIGEST_NAMES = ("events", "period", "count")

Lookup = Callable[[EvalContext], list[Any]]


KEY_ALIASES = {"user_id": "user.id", "username": "claims.username", "ip": "initiatorIpAddress"}
"""Template names usable as key paths too: `group_by: [user_id]` means the event's user.id."""


def compile_key(expression: str) -> Lookup:
    """The lookup of one group_by / distinct path; ValueError naming what is wrong."""
    expression = KEY_ALIASES.get(expression, expression)
    if expression.startswith("claims."):
        return subject_lookup("claim", expression[len("claims."):])
    if expression.startswith("envelope."):
        return subject_lookup("envelope", "$." + expression[len("envelope."):])
    if expression.startswith("geo."):
        return subject_lookup("path", expression)
    return subject_lookup("path", expression if expression.startswith("$") else "$." + expression)


def _compile(path: str, where: str, line: int, report: Report) -> Lookup | None:
    try:
        return compile_key(path)
    except ValueError as exc:
        report(line, where, str(exc))
        return None


def _compile_group(paths: tuple[str, ...], where: str, line: int, report: Report) -> tuple[Lookup, ...]:
    lookups = [_compile(path, f"{where}[{index}]", line, report) for index, path in enumerate(paths)]
    return tuple(lookup for lookup in lookups if lookup is not None)


@dataclass(frozen=True)
class CompiledThreshold:
    spec: Threshold
    group: tuple[Lookup, ...]
    distinct: Lookup | None


@dataclass(frozen=True)
class CompiledSuppress:
    spec: Suppress
    group: tuple[Lookup, ...] | None


def _threshold(value: Any, line: int, report: Report) -> CompiledThreshold | None:
    spec = parse_threshold(value, line, report)
    if spec is None:
        return None
    distinct = _compile(spec.distinct, "threshold.distinct", line, report) if spec.distinct else None
    return CompiledThreshold(spec, _compile_group(spec.group_by, "threshold.group_by", line, report), distinct)


def _suppress(value: Any, line: int, report: Report) -> CompiledSuppress | None:
    spec = parse_suppress(value, line, report)
    if spec is None:
        return None
    group = None if spec.group_by is None else _compile_group(spec.group_by, "suppress.group_by", line, report)
    return CompiledSuppress(spec, group)


def _combination(node: Mapping[str, Any], report: Report) -> None:
    line_of = getattr(node, "line_of", None)
    check_combination([key for key in STATEFUL_KEYS if key in node], line_of("digest") if line_of else 0, report)


STATEFUL = RuleExtension("stateful", (RuleKey("threshold", _threshold, THRESHOLD_NAMES),
                                       RuleKey("suppress", _suppress, THRESHOLD_NAMES),
                                       RuleKey("digest", parse_digest, DIGEST_NAMES)), _combination)
"""The stateful keys, passed to the rule loader (engine/match/extensions.py)."""


def _first(lookup: Lookup, ctx: EvalContext) -> Any:
    found = lookup(ctx)
    return found[0] if found else None


@dataclass(frozen=True)
class StatefulRule:
    """A loaded rule's stateful keys, ready to turn a matching event into an Observation."""

    rule: Rule
    spec: StatefulSpec
    group: tuple[Lookup, ...] = ()
    suppress_group: tuple[Lookup, ...] = ()
    distinct: Lookup | None = None

    @classmethod
    def of(cls, rule: Rule) -> StatefulRule | None:
        threshold: CompiledThreshold | None = rule.extra.get("threshold")
        suppress: CompiledSuppress | None = rule.extra.get("suppress")
        digest: Digest | None = rule.extra.get("digest")
        if threshold is None and suppress is None and digest is None:
            return None
        if any(key in rule.extra for key in ("sequence", "new_value", "absence")):
            return None  # their suppression is decided with them (engine/match/stateful/detect.py)
        group = threshold.group if threshold else ()
        return cls(rule, StatefulSpec(threshold.spec if threshold else None, suppress.spec if suppress else None,
                                      digest),
                   group, suppress.group if suppress and suppress.group is not None else group,
                   threshold.distinct if threshold else None)

    def observe(self, ctx: EvalContext) -> Observation | str:
        """What the state needs of this event, or why it cannot count (a group_by value is missing)."""
        group = tuple(_first(lookup, ctx) for lookup in self.group)
        suppress_group = tuple(_first(lookup, ctx) for lookup in self.suppress_group)
        threshold_paths = self.spec.threshold.group_by if self.spec.threshold else ()
        for paths, values in ((threshold_paths, group), (self.spec.group_by, suppress_group)):
            for path, value in zip(paths, values):
                if value is None:
                    return f"not counted: {path} is missing in this event"
        return Observation(jti=ctx.envelope.jti, time=ctx.envelope.iat_ms / 1000, group=group,
                           suppress_group=suppress_group, item=_item(ctx),
                           distinct=_first(self.distinct, ctx) if self.distinct else None)


def _item(ctx: EvalContext) -> dict[str, Any]:
    """One event as a firing's `events` lists it (plain JSON: it is kept in the store)."""
    context = ctx.template_context({})
    return {"jti": ctx.envelope.jti, "type": context["type"], "username": context["username"],
            "user_id": context["user_id"], "ip": context["ip"], "occurred_at": context["occurred_at"].isoformat(),
            "event": ctx.body}

