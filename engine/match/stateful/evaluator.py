"""StatefulRules: a loaded RuleSet plus the store's state. The live processor, `idhooks test` (with a
throw-away store) and `idhooks replay` all evaluate through it; RuleSet.decide underneath is the only
place a rule's conditions are tested.

A plain rule's decision passes through unchanged. A matched stateful rule's decision is replaced by the
state's verdict: a miss that says why (`threshold: count 3 of 5 within 10m`), or a firing rendered with the
extra template names and carrying its stable firing id (the jobs' key and Idempotency-Key).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from engine.verify.envelope import Envelope
from engine.match.context import EvalContext
from engine.match.jobs import jobs_for
from engine.match.ruleset import Decision
from engine.match.stateful.decide import Firing, evaluate, fire_due_digests
from engine.match.index import selector_keys
from engine.match.stateful.detect import (MemoryRule, absence_event, decide_new_value, decide_sequence, fire_due_timers,
                                          trigger_jti)
from engine.match.stateful.rulekeys import StatefulRule
from engine.errors import StoreError
from engine.store.base import FULL, MISSING, NOT_EVALUATED, Store
from engine.store.state import CAPPED, Timer

log = logging.getLogger("idhooks.stateful")
TIMER_LEASE = 60.0
"""How long a process owns the due timers it claimed before another process may fire them."""
DEFER_FOR = 3600.0
"""How long a firing whose event is not evaluated yet waits (in memory, tried again on each tick) to be
recorded on it; the firing itself was already enqueued or counted."""
MAX_DEFERRED = 10_000
"""Firings waiting for their event's evaluation; beyond this the oldest are given up (a log line each)."""


class StatefulRules:
    """Evaluate events with `ruleset` and the state in `store`. `on_capped(rule_id)` is called whenever
    a rule's group cap refuses a new group (the server counts it in a metric)."""

    def __init__(self, ruleset: Any, store: Store, *, clock: Callable[[], float] = time.time,
                 on_capped: Callable[[str], None] = lambda rule_id: None,
                 on_bounded: Callable[[str, str], None] = lambda rule_id, bound: None,
                 on_shadowed: Callable[[Decision], None] = lambda decision: None, enricher: Any = None) -> None:
        self.ruleset, self.store, self.clock, self.on_capped = ruleset, store, clock, on_capped
        self.on_bounded, self.on_shadowed = on_bounded, on_shadowed
        self.rules = getattr(ruleset, "rules", [])
        self.enricher = enricher or getattr(ruleset, "enricher", None)
        found = (StatefulRule.of(rule) for rule in self.rules if rule.enabled)
        self.stateful = {entry.rule.id: entry for entry in found if entry is not None}
        self.digests = {rule_id: entry.spec.digest for rule_id, entry in self.stateful.items() if entry.spec.digest}
        remembered = (MemoryRule.of(rule) for rule in self.rules if rule.enabled)
        self.memory = {entry.rule.id: entry for entry in remembered if entry is not None}
        self._warned: set[str] = set()
        self._deferred: list[tuple[str, dict[str, Any], float]] = []  # (jti, record, first tried at)

    def evaluate(self, envelope: Envelope, uri: str, webhook: str, *, seen: dict | None = None,
                 now: float | None = None) -> list[Decision]:
        """One decision per candidate rule; `now` is the event's arrival time (default: the clock)."""
        ctx = EvalContext(envelope, uri, webhook, seen, self.enricher)
        decisions = self.ruleset.decide(ctx)
        if not self.stateful and not self.memory:
            return decisions
        at = self.clock() if now is None else now
        return [self._decide(d, ctx, at) if d.matched and d.rule_id in self.stateful
                else self._remember(d, ctx, at) if d.rule_id in self.memory else d for d in decisions]

    def _remember(self, decision: Decision, ctx: EvalContext, now: float) -> Decision:
        """A sequence / new_value / absence rule's verdict on this event."""
        entry = self.memory[decision.rule_id]
        if entry.kind == "absence":
            own = entry.rule.own_selectors if entry.rule.own_selectors is not None else entry.rule.selectors
            triggered = decision.matched and any(key in own for key in selector_keys(ctx.uri))
            outcome = absence_event(self.store, entry, ctx, triggered)
        elif not decision.matched:
            return decision
        elif entry.kind == "sequence":
            outcome = decide_sequence(self.store, entry, ctx, now)
        else:
            outcome = decide_new_value(self.store, entry, ctx, now)
        if outcome.status in (CAPPED, "evicted"):
            self.on_bounded(decision.rule_id, {"sequence": "max_groups", "absence": "max_timers"}.get(
                entry.kind, "max_groups" if outcome.status == CAPPED else "max_values"))
        if outcome.firing is None:
            return Decision(decision.rule_id, False, f"{entry.kind}: {outcome.reason}", None)
        context = {**ctx.template_context(entry.rule.info), **outcome.firing.context}
        return entry.rule.render(context, outcome.firing.id)

    def _decide(self, decision: Decision, ctx: EvalContext, now: float) -> Decision:
        entry = self.stateful[decision.rule_id]
        key = "digest" if entry.spec.digest else "threshold" if entry.spec.threshold else "suppress"
        seen = entry.observe(ctx)
        if isinstance(seen, str):
            return Decision(decision.rule_id, False, f"{key}: {seen}", None)
        outcome = evaluate(self.store, decision.rule_id, entry.spec, seen, now)
        if outcome.status == CAPPED:
            self._capped(decision.rule_id)
        if outcome.firing is None:
            return Decision(decision.rule_id, False, f"{key}: {outcome.reason}", None)
        context = {**ctx.template_context(entry.rule.info), **outcome.firing.context}
        return entry.rule.render(context, outcome.firing.id)

    def _capped(self, rule_id: str) -> None:
        self.on_capped(rule_id)
        if rule_id not in self._warned:
            self._warned.add(rule_id)
            log.warning("threshold.max_groups reached: new groups are not counted until old windows expire",
                        extra={"rule": rule_id})

    def fire_due_digests(self, now: float, send: Callable[[Decision], None] | None = None) -> int:
        """The periodic tick: every due digest period's actions are enqueued (or handed to `send`, for
        the offline tester); how many periods fired. The firing is recorded on the newest event its
        `events` list (the store keeps only the period's first max_items)."""
        def fire(rule_id: str, firing: Firing) -> None:
            rule = self.stateful[rule_id].rule
            decision = rule.render({"rule": rule.info, **firing.context}, firing.id)
            self._send(decision, now, send)
            items = firing.context.get("events") or [{}]
            if send is None:
                self._record([(str(items[-1].get("jti", "")), decision, "digest",
                               firing.context["period"]["end"].timestamp())], now)

        return fire_due_digests(self.store, self.digests, now, fire)

    def fire_due_timers(self, now: float, send: Callable[[Decision], None] | None = None,
                        lease: float = TIMER_LEASE) -> int:
        """The periodic tick for absence rules: every expired timer this process claims fires once (its
        actions enqueued, or handed to `send` for the offline tester); how many fired. Each firing is
        recorded on the event that started its timer."""
        def fire(firings: list[tuple[Decision, Timer]]) -> None:
            if send is not None:
                for decision, _ in firings:
                    send(decision)
                return
            jobs = []
            for decision, _ in firings:
                if decision.shadow:
                    self._send(decision, now, None)
                else:
                    jobs += jobs_for(decision.firing_id or decision.rule_id, now, decision)
            if jobs:
                self.store.enqueue_jobs(jobs, now)  # one transaction for the batch
            self._record([(trigger_jti(timer), decision, "timer", timer.due_at) for decision, timer in firings], now)

        return fire_due_timers(self.store, self.memory, now, lease, fire, self.enricher)

    def _record(self, firings: list[tuple[str, Decision, str, float]], now: float) -> None:
        """Add the tick's firings, each (jti, decision, fired_by, fired_at), to the decisions of their stored
        events in one store transaction. Best effort: the firings were already enqueued or counted as
        shadowed; a failed write is logged, never retried. A firing whose event is not evaluated yet (its
        evaluation writes the whole decision list) waits for a later tick."""
        items = [(jti, {**decision.to_json(), "fired_by": by, "fired_at": at}) for jti, decision, by, at in firings]
        self._append([(jti, record, now) for jti, record in items], now)

    def _append(self, items: list[tuple[str, dict[str, Any], float]], now: float) -> None:
        try:
            statuses = self.store.append_decisions([(jti, record) for jti, record, _ in items], now)
        except StoreError as exc:
            log.warning("could not record firings on their events", extra={"firings": len(items), "error": str(exc)})
            return
        for (jti, record, since), status in zip(items, statuses):
            if status == NOT_EVALUATED and now - since < DEFER_FOR:
                self._deferred.append((jti, record, since))
            elif status in (MISSING, FULL, NOT_EVALUATED):
                log.info("firing not recorded on its event", extra={"rule": record.get("rule"), "jti": jti,
                                                                     "firing": record.get("firing"), "reason": status})
        while len(self._deferred) > MAX_DEFERRED:
            jti, record, _ = self._deferred.pop(0)
            log.info("firing not recorded on its event", extra={"rule": record.get("rule"), "jti": jti,
                                                                 "firing": record.get("firing"),
                                                                 "reason": "too many firings wait for their events"})

    def _retry_deferred(self, now: float) -> None:
        """Record the firings that waited for their event's evaluation (each tick)."""
        if self._deferred:
            waiting, self._deferred = self._deferred, []
            self._append(waiting, now)

    def tick(self, now: float, send: Callable[[Decision], None] | None = None) -> int:
        """Due digests and due absence timers: how many fired."""
        self._retry_deferred(now)
        return self.fire_due_digests(now, send) + self.fire_due_timers(now, send)

    def _send(self, decision: Decision, now: float, send: Callable[[Decision], None] | None) -> None:
        if send is not None:
            send(decision)
        elif decision.shadow:
            self.on_shadowed(decision)
            log.info("shadow rule would send", extra={"rule": decision.rule_id, "firing": decision.firing_id,
                                                      "actions": [a.to_json() for a in decision.actions]})
        else:
            self.store.enqueue_jobs(jobs_for(decision.firing_id or decision.rule_id, now, decision), now)
