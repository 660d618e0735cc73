"""The numbers of the console's overview page: the last hour's events per minute by type, refused
deliveries, queue depth, dead letters, each webhook's last event and lease expiry, the rules' reload state."""

from __future__ import annotations

from collections import Counter
from typing import Any

from engine.api.deps import ApiDeps
from engine.ops.events import EventQuery, list_events
from engine.ops.subscriptions import subscription_report

WINDOW = 3600.0
ACCEPTED_OUTCOMES = ("accepted", "duplicate", "stale")


def refusals(deps: ApiDeps) -> dict[str, float]:
    """Refused event POSTs since the process started, by outcome (bad_signature, bad_payload, ...)."""
    counts: Counter[str] = Counter()
    for metric in deps.metrics.received.collect():
        for sample in metric.samples:
            outcome = sample.labels.get("outcome", "")
            if sample.name.endswith("_total") and outcome not in ACCEPTED_OUTCOMES:
                counts[outcome] += sample.value
    return dict(counts)


def per_minute(items: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """One row per event type: events in the window and a 60-slot per-minute histogram (oldest first), each
slot scaled 0-10 against the busiest minute (a CSS class per step: the page allows no inline styles)."""
    rows: dict[str, list[int]] = {}
    for item in items:
        slot = 59 - min(59, int((now - item["received_at"]) // 60))
        for kind in item["types"]:
            rows.setdefault(kind, [0] * 60)[slot] += 1
    peak = max((max(counts) for counts in rows.values()), default=1) or 1
    return [{"type": kind, "total": sum(counts), "minutes": [round(10 * c / peak) for c in counts]}
            for kind, counts in sorted(rows.items(), key=lambda kv: -sum(kv[1]))]


def overview(deps: ApiDeps) -> dict[str, Any]:
    now = deps.clock()
    recent = list_events(deps.store, EventQuery(since=now - WINDOW), 500).items
    stats = deps.store.stats()
    readiness = deps.readiness()
    report = subscription_report(deps.config.get(), deps.store, now)
    return {"types": per_minute(recent, now), "warnings": report["warnings"], "recent": len(recent), "capped": len(recent) == 500,
            "refusals": refusals(deps), "jobs": stats.jobs, "quarantine": stats.quarantine_entries,
            "webhooks": report["webhooks"],
            "rules": {"count": len(deps.rules.get().ruleset.rules), "loaded_at": readiness.get("loaded_at"),
                      "errors": readiness.get("errors") or []}}
