"""The loaded rules as people look at them: GET /api/v1/rules and the console's rules page."""

from __future__ import annotations

from typing import Any

from engine.match.ruleset import Rule, RuleSet
from engine.match.stateful.specs import STATEFUL_KEYS


def rule_json(rule: Rule) -> dict[str, Any]:
    """id, file:line, kind (match, or the stateful key: threshold, suppress, digest), mode (live or shadow),
    events and actions."""
    kind = next((key for key in STATEFUL_KEYS if key in rule.extra), "match")
    return {"id": rule.id, "source": f"{rule.source}:{rule.line}", "kind": kind, "enabled": rule.enabled,
            "mode": getattr(rule, "mode", "live"),
            "description": rule.description, "events": list(rule.events),
            "actions": [{"type": a.type, "destination": a.destination} for a in rule.actions]}


def rules_report(ruleset: RuleSet, loaded_at: float | None, errors: list[str]) -> dict[str, Any]:
    """The rule listing with the reload state: when the running set was loaded and the last reload's errors
    (a failed reload keeps the last good set running)."""
    return {"items": [rule_json(r) for r in ruleset.rules], "next": None, "loaded_at": loaded_at,
            "last_reload_error": "\n".join(errors) if errors else None}
