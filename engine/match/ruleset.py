"""A compiled rule set. `RuleSet.decide` tests each candidate rule's conditions and renders its actions;
stateful rules add their window/suppression/digest verdict on top (engine/match/stateful/evaluator.py).

A RuleSet is immutable once built: reloading builds a new one and swaps it (engine/server.py: Service.reload), so an
event is always matched against exactly one rule set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence, cast

from engine.verify.envelope import Envelope
from engine.match.rule_actions import CAPTURE_NONCE_FIELD, CompiledAction, shown_captured
from engine.match.conditions import Condition, Leaf
from engine.match.context import EvalContext
from engine.match.enrich import Enricher
from engine.match.index import RuleIndex


@dataclass(slots=True)
class RenderedAction:
    index: int
    type: str
    destination: str | None
    fields: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The record shown by `idhooks test`/`events show`: captured values appear as `{{ captured.NAME }}`
        (they are filled in when the job is sent)."""
        fields = self.fields
        if CAPTURE_NONCE_FIELD in fields:
            fields = shown_captured(fields)
        return {"index": self.index, "type": self.type, "destination": self.destination, "fields": fields}


@dataclass(slots=True)
class Decision:
    rule_id: str
    matched: bool
    failed: str | None = None
    actual: Any = None
    actions: Sequence[RenderedAction] = ()  # tuples by default: most decisions are misses, built per event
    errors: Sequence[str] = ()  # templates that failed at render time (rendered '')
    firing_id: str | None = None  # a stateful rule's firing (rule, group, window): its jobs' key prefix
    shadow: bool = False  # `mode: shadow`: the actions are rendered and recorded as "would send", never queued

    def to_json(self) -> dict[str, Any]:
        """The decision record stored with the event (plain JSON)."""
        record: dict[str, Any] = {"rule": self.rule_id, "matched": self.matched}
        if self.matched:
            record["actions"] = [a.to_json() for a in self.actions]
            if self.firing_id:
                record["firing"] = self.firing_id
            if self.shadow:
                record["shadow"] = True
        else:
            record["failed"], record["actual"] = self.failed, self.actual
        if self.errors:
            record["errors"] = self.errors
        return record


@dataclass(eq=False)
class Rule:
    id: str
    source: str
    line: int
    description: str = ""
    enabled: bool = True
    mode: str = "live"  # or "shadow": evaluate and record what would be sent, send nothing
    events: tuple[str, ...] = ()  # as written, for listings
    selectors: tuple[tuple[str, str], ...] = ()
    own_selectors: tuple[tuple[str, str], ...] | None = None  # `event:` alone, when a key added event types
    webhooks: frozenset[str] | None = None
    condition: Condition | None = None
    actions: list[CompiledAction] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # compiled values of rule-key extensions, by key

    @property
    def info(self) -> dict[str, Any]:
        """What templates see as `rule`."""
        return {"id": self.id, "description": self.description, "source": self.source}

    def leaves(self) -> list[Leaf]:
        """Every condition leaf, including those inside rule keys (a sequence step's or an expect's `when`)."""
        inner = [condition for value in self.extra.values() for condition in getattr(value, "conditions", ())]
        return [leaf for condition in ([self.condition] if self.condition else []) + inner
                for leaf in condition.leaves()]

    def decide(self, ctx: EvalContext) -> Decision:
        if self.webhooks is not None and ctx.webhook not in self.webhooks:
            return Decision(self.id, False, f"webhooks: only for {', '.join(sorted(self.webhooks))}", ctx.webhook)
        miss = self.condition.test(ctx) if self.condition is not None else None
        if miss is not None:
            return Decision(self.id, False, *miss)
        return self.render(ctx.template_context(self.info) if self.actions else {})

    def render(self, context: dict[str, Any], firing_id: str | None = None) -> Decision:
        """The matched decision with every action rendered in `context`."""
        errors: list[str] = []
        rendered = []
        for a in self.actions:  # a loop, not a comprehension: one frame less per match
            rendered.append(RenderedAction(a.index, a.type, a.destination, a.render(context, errors)))
        return Decision(self.id, True, None, None, rendered, errors, firing_id, self.mode == "shadow")


class RuleSet:
    """Every loaded rule, indexed by event URI. Disabled rules are kept (for listings) but never evaluated."""

    def __init__(self, rules: list[Rule], sources: tuple[str, ...] = (), enricher: Enricher | None = None) -> None:
        self.rules = rules
        self.sources = sources
        self.enricher = enricher  # None: the bundled IP data (engine/match/enrich.py)
        self._index = RuleIndex([r for r in rules if r.enabled])

    def candidates(self, uri: str) -> tuple[Rule, ...]:
        return cast(tuple[Rule, ...], self._index.candidates(uri))  # the index holds this set's rules

    def evaluate(self, envelope: Envelope, uri: str, webhook: str, *, seen: dict | None = None) -> list[Decision]:
        """One decision per candidate rule for `uri`. `seen` collects condition outcomes for coverage."""
        return self.decide(EvalContext(envelope, uri, webhook, seen, self.enricher))

    def decide(self, ctx: EvalContext) -> list[Decision]:
        """One decision per candidate rule for the event in `ctx` (which callers may reuse afterwards:
        its lookups and template context are built once per event)."""
        return [rule.decide(ctx) for rule in self._index.candidates(ctx.uri)]  # type: ignore[attr-defined]  # the index holds Rules
