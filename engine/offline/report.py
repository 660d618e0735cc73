"""Plain-text renderings of decisions, shared by `idhooks test`, `idhooks replay` and `idhooks events`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable

from engine.catalog import uri_to_alias


def short(value: Any, limit: int = 200) -> str:
    """JSON of `value`, cut to `limit` characters so one odd event cannot flood a terminal."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def event_type(uri: str) -> str:
    return uri_to_alias(uri) or uri


def when(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def decision_lines(records: Iterable[dict[str, Any]], indent: str = "  ") -> list[str]:
    """One block per decision record (Decision.to_json()): matched with rendered actions, or the miss."""
    lines = []
    for record in records:
        if "warning" in record:
            lines.append(f"{indent}warning: {record['warning']}")
            continue
        if "rule" not in record:  # an event whose evaluation or recording failed
            lines.append(f"{indent}ERROR {record.get('error', record)}")
            continue
        if record.get("matched"):
            shadow = " (shadow: would send, nothing sent)" if record.get("shadow") else ""
            lines.append(f"{indent}MATCH {record['rule']}{shadow}{_fired(record)}")
            for action in record.get("actions", []):
                target = f" -> {action['destination']}" if action.get("destination") else ""
                verb = "would send" if record.get("shadow") else "action"
                lines.append(f"{indent}  {verb} {action['index']} {action['type']}{target}")
                lines += [f"{indent}    {k}: {short(v)}" for k, v in action.get("fields", {}).items()]
        else:
            lines.append(f"{indent}miss  {record['rule']}: {record.get('failed')} "
                         f"(actual: {short(record.get('actual'))})")
        lines += [f"{indent}  error: {e}" for e in record.get("errors", [])]
    return lines


def _fired(record: dict[str, Any]) -> str:
    """How a firing recorded after the event's evaluation came about (Store.append_decision), or ''."""
    by, at = record.get("fired_by"), record.get("fired_at")
    if by is None:
        return ""
    shown = when(at) if isinstance(at, (int, float)) else "?"
    return {"timer": f", later: absence timer expired {shown}",
            "digest": f", later: digest period ended {shown}"}.get(str(by), f", later: {short(by, 40)} {shown}")


def matched_rules(records: Iterable[dict[str, Any]] | None) -> list[str]:
    return [r["rule"] for r in records or [] if r.get("matched")]
