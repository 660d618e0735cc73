"""Decisions of `sequence`, `new_value` and `absence` rules: does this event fire the rule now,
and with which template names? Same shapes as decide.py: the store keeps the state atomically, these
functions turn an event into an offer and the store's verdict into an Outcome with a stable firing id.

- sequence: fires once per completed sequence; firing id = (rule, group, start of the sequence).
- new_value: fires when the value is new for an old-enough group; firing id = the event's own key.
- absence: the trigger starts a durable timer in the store; `fire_due_timers()` (the server's periodic
  tick, every process) claims due timers so each is handed to one process, enqueues its firing keyed by
  (rule, group, trigger time) and only then forgets it: a process killed in between leaves the claim to
  expire and another process fires the same job key, which the queue de-duplicates.
Every firing then passes `suppress`, like a threshold's.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from engine.config.durations import format_duration
from engine.match.context import EvalContext
from engine.match.enrich import Enricher
from engine.match.ruleset import Decision, Rule
from engine.match.stateful.decide import Firing, Outcome, _utc, firing_id, group_key, suppress_firing
from engine.match.stateful.memorykeys import CompiledAbsence, CompiledNewValue, CompiledSequence
from engine.match.stateful.rulekeys import CompiledSuppress, Lookup, _item
from engine.match.stateful.specs import Suppress
from engine.store.state import (CAPPED, COMPLETED, DUPLICATE, IGNORED, KNOWN, LEARNING, REPLAYED, RESET, RUNNING,
                                STARTED, NewValueLimits, SequenceEvent, SequenceLimits, Timer)
from engine.verify.envelope import envelope_from_claims

log = logging.getLogger("idhooks.stateful")

MAX_KEY = 200
"""Longer group keys and values are stored as a hash: attackers choose the values (huge usernames)."""
TIMER_BATCH = 500


def bounded(text: str) -> str:
    """`text`, or its SHA-256 when longer than MAX_KEY characters (state stays small per entry)."""
    if len(text) <= MAX_KEY:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True)
class MemoryRule:
    """A loaded rule with one of the keys sequence / new_value / absence, and its suppression."""

    rule: Rule
    kind: str
    compiled: Any
    suppress: Suppress | None = None
    suppress_group: tuple[Lookup, ...] | None = None

    @classmethod
    def of(cls, rule: Rule) -> MemoryRule | None:
        kind = next((key for key in ("sequence", "new_value", "absence") if rule.extra.get(key) is not None), None)
        if kind is None:
            return None
        suppress: CompiledSuppress | None = rule.extra.get("suppress")
        return cls(rule, kind, rule.extra[kind], suppress.spec if suppress else None,
                   suppress.group if suppress else None)

    def values(self, lookups: tuple[Lookup, ...], paths: tuple[str, ...], ctx: EvalContext) -> list[Any] | str:
        """The group's values, or why the event cannot count (a group_by value is missing)."""
        found = []
        for lookup, path in zip(lookups, paths):
            values = lookup(ctx)
            if not values:
                return f"not counted: {path} is missing in this event"
            found.append(values[0])
        return found

    def groups(self, ctx: EvalContext) -> tuple[list[Any], list[Any]] | str:
        """(the key's group values, the suppress group's values) or why the event cannot count."""
        group = self.values(self.compiled.group, self.compiled.group_by, ctx)
        if isinstance(group, str) or self.suppress_group is None:
            return group if isinstance(group, str) else (group, group)
        paths = self.suppress.group_by if self.suppress and self.suppress.group_by else ()
        other = self.values(self.suppress_group, paths, ctx)
        return other if isinstance(other, str) else (group, other)


# -- sequence ---------------------------------------------------------------------------------------------
_SEQUENCE_REASONS = {
    IGNORED: "no sequence of this group waits for this event",
    RESET: "reset_on: the group's sequence was dropped",
    DUPLICATE: "event already counted (same jti)",
    CAPPED: "not counted: the rule holds sequence.max_groups groups",
}


def decide_sequence(store: Any, entry: MemoryRule, ctx: EvalContext, now: float) -> Outcome:
    spec: CompiledSequence = entry.compiled
    groups = entry.groups(ctx)
    if isinstance(groups, str):
        return Outcome(None, groups)
    group, suppress_group = groups
    matches = tuple(i for i, step in enumerate(spec.steps) if step.holds(ctx))
    reset = spec.reset_on is not None and spec.reset_on.holds(ctx)
    if not matches and not reset:
        return Outcome(None, "the event matches no step (their `when` did not hold)")
    time = ctx.envelope.iat_ms / 1000
    key = bounded(group_key(group))
    limits = SequenceLimits(tuple(step.count for step in spec.steps), spec.within, spec.max_groups)
    result = store.sequence_offer(entry.rule.id, key, SequenceEvent(ctx.envelope.jti, time, matches, reset,
                                                                    _item(ctx)), limits, now)
    if result.status not in (COMPLETED, REPLAYED):
        reason = _SEQUENCE_REASONS.get(result.status) or \
            f"{'started' if result.status == STARTED else 'counted'}: waiting for step {result.step + 1} of " \
            f"{len(spec.steps)} within {format_duration(spec.within)}"
        return Outcome(None, reason, result.status)
    steps = [{**step, "first": _utc(step["first"]), "last": _utc(step["last"])} for step in result.steps]
    context = {"steps": steps, "group": group, "started": _utc(result.started)}
    token = firing_id(entry.rule.id, key, result.started)
    outcome = suppress_firing(store, entry.rule.id, entry.suppress, suppress_group, time, Firing(token, context),
                              time, token)
    return Outcome(outcome.firing, outcome.reason, result.status)


# -- new_value --------------------------------------------------------------------------------------------
def decide_new_value(store: Any, entry: MemoryRule, ctx: EvalContext, now: float) -> Outcome:
    spec: CompiledNewValue = entry.compiled
    found = spec.value(ctx)
    if not found or found[0] == "":
        return Outcome(None, f"not counted: new_value.of {spec.of} is missing in this event (a missing value "
                             "is never new)")
    groups = entry.groups(ctx)
    if isinstance(groups, str):
        return Outcome(None, groups)
    group, suppress_group = groups
    value, time, jti = found[0], ctx.envelope.iat_ms / 1000, ctx.envelope.jti
    text = bounded(_value_text(value))
    limits = NewValueLimits(spec.lookback, spec.learn_for, spec.max_values, spec.max_groups)
    result = store.new_value_seen(entry.rule.id, bounded(group_key(group)), text, jti, time, limits, now)
    shown = json.dumps(value, default=str)[:80]
    if result.status == CAPPED:
        return Outcome(None, "not counted: the rule holds new_value.max_groups groups", CAPPED)
    status = "evicted" if result.evicted else result.status
    if result.status == KNOWN:
        return Outcome(None, f"{spec.of} {shown} was seen for this group within {format_duration(spec.lookback)}",
                       status)
    if result.status == LEARNING:
        return Outcome(None, f"learning: {spec.of} {shown} is new, but the group was first seen less than "
                             f"learn_for {format_duration(spec.learn_for)} ago", status)
    context = {"value": value, "group": group, "group_since": _utc(result.group_since)}
    token = f"{entry.rule.id}:{jti}"
    outcome = suppress_firing(store, entry.rule.id, entry.suppress, suppress_group, time, Firing(None, context),
                              time, token)
    return Outcome(outcome.firing, outcome.reason, status)


# -- absence ----------------------------------------------------------------------------------------------
def absence_event(store: Any, entry: MemoryRule, ctx: EvalContext, triggered: bool) -> Outcome:
    """Cancel the group's timer when this is the expected event; start it when the rule's own event and
    `when` matched (`triggered`). The outcome never fires: a timer fires later, from the tick."""
    spec: CompiledAbsence = entry.compiled
    expected = spec.expect.holds(ctx)
    if not expected and not triggered:
        return Outcome(None, "neither the rule's event nor absence.expect")
    groups = entry.groups(ctx)
    if isinstance(groups, str):
        return Outcome(None, groups)
    group, suppress_group = groups
    key = bounded(group_key(group))
    reasons = []
    if expected:
        cancelled = store.timer_cancel(entry.rule.id, key)
        reasons.append("the expected event arrived: timer cancelled" if cancelled
                       else "the expected event arrived; no timer was running for this group")
    status = ""
    if triggered:
        time = ctx.envelope.iat_ms / 1000
        payload = {"set": {**ctx.envelope.claims, "events": {ctx.uri: ctx.body}}, "uri": ctx.uri,
                   "webhook": ctx.webhook, "group": group, "suppress_group": suppress_group}
        status = store.timer_start(entry.rule.id, key, time + spec.within, time, payload, spec.max_timers)
        reasons.append({STARTED: f"timer started: fires at {_utc(time + spec.within).isoformat()} unless "
                                 f"{', '.join(spec.expect.events)} arrives for this group",
                        RUNNING: "a timer for this group is already running",
                        CAPPED: "not started: the rule holds absence.max_timers timers"}[status])
    return Outcome(None, "; ".join(reasons), status)


def timer_decision(store: Any, entry: MemoryRule, timer: Timer, enricher: Enricher | None) -> Decision | None:
    """The rendered firing of an expired timer (None when suppressed), with the trigger's template names."""
    spec: CompiledAbsence = entry.compiled
    payload = timer.payload
    ctx = EvalContext(envelope_from_claims(payload["set"]), payload["uri"], payload["webhook"], None, enricher)
    token = f"{firing_id(entry.rule.id, timer.group_key, timer.started)}:absence"
    context = {"within": format_duration(spec.within), "expired_at": _utc(timer.due_at), "group": payload["group"]}
    outcome = suppress_firing(store, entry.rule.id, entry.suppress, payload["suppress_group"], timer.due_at,
                              Firing(token, context), timer.due_at, token)
    if outcome.firing is None:
        log.info("absence timer expired but suppressed", extra={"rule": entry.rule.id, "reason": outcome.reason})
        return None
    return entry.rule.render({**ctx.template_context(entry.rule.info), **context}, token)


def trigger_jti(timer: Timer) -> str:
    """The jti of the event that started the timer (its claims are kept in the payload)."""
    return str(timer.payload.get("set", {}).get("jti", ""))


def fire_due_timers(store: Any, entries: Mapping[str, MemoryRule], now: float, lease: float,
                    send: Callable[[list[tuple[Decision, Timer]]], None], enricher: Enricher | None = None) -> int:
    """Fire every absence timer due at `now` that this process claims, a batch at a time: `send(firings)`
    (each a decision and its timer) must enqueue them durably (keyed by each decision's firing_id); only then
    are the batch's timers forgotten. How many fired."""
    fired = 0
    while True:
        timers = store.timers_claim(now, lease, TIMER_BATCH)
        decisions: list[tuple[Decision, Timer]] = []
        for timer in timers:
            entry = entries.get(timer.rule_id)
            if entry is None or entry.kind != "absence":
                log.warning("dropping an absence timer of a rule that is no longer loaded",
                            extra={"rule": timer.rule_id})
                continue
            decision = timer_decision(store, entry, timer, enricher)
            if decision is not None:
                log.info("absence timer expired: firing", extra={"rule": timer.rule_id, "firing": decision.firing_id})
                decisions.append((decision, timer))
        if decisions:
            send(decisions)
            fired += len(decisions)
        if timers:
            store.timers_done(timers)
        if len(timers) < TIMER_BATCH:
            return fired
