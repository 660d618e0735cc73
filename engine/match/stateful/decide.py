"""Decisions of stateful rules: does this matching event fire the rule now, and with which context?

The rules engine calls `evaluate()` for a rule whose conditions held, with the values it extracted from
the event (group key values, distinct value, template item). A threshold rule fires only when its window
fills; suppression then lets one firing per group through; a digest rule only collects, and
`fire_due_digests()` (called from the server's periodic tick) fires each period once.

Firing ids are stable for (rule, group, window) and (rule, period): used as the jobs' key and
Idempotency-Key, evaluating the same event again after a crash can never send twice.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

from engine.config.durations import format_duration
from engine.match.stateful.specs import Digest, StatefulSpec, Suppress
from engine.store.state import CAPPED, CONSUMED, DUPLICATE, LATE, DigestBatch, StateStore, WindowEntry

_NOT_COUNTED = {
    DUPLICATE: "event already counted (same jti)",
    LATE: "event arrived later than threshold.late after its event time",
    CONSUMED: "event belongs to a window that already fired",
    CAPPED: "not counted: the rule holds threshold.max_groups groups",
}


@dataclass(frozen=True)
class Observation:
    """What the rules engine extracted from one matching event."""

    jti: str
    time: float                             # event time (iat) in seconds
    group: tuple[Any, ...] = ()             # values of threshold.group_by
    suppress_group: tuple[Any, ...] = ()    # values of suppress.group_by (or the threshold's)
    distinct: Any = None                    # value of threshold.distinct
    item: dict[str, Any] = field(default_factory=dict)  # this event as templates see it in `events`


@dataclass(frozen=True)
class Firing:
    """A rule fires: `id` is the stable job key prefix (None = the usual per-event key) and `context`
    is added to the template context."""

    id: str | None
    context: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """`firing` when the rule fires now, else None with `reason` for the decision record. `status` is
    the window status (engine.match.stateful.state) or '' when the rule has no threshold."""

    firing: Firing | None
    reason: str = ""
    status: str = ""


def group_key(values: Sequence[Any]) -> str:
    """The stored key of a group: canonical JSON of its values, so equal values share one counter."""
    return json.dumps(list(values), sort_keys=True, separators=(",", ":"), default=str)


def firing_id(rule_id: str, key: str, start: float) -> str:
    """Stable id of a rule's firing for one group (hashed: a key may be long or hold any text)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{rule_id}:{digest}:{math.floor(start * 1000)}"


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def evaluate(store: StateStore, rule_id: str, spec: StatefulSpec, seen: Observation, now: float) -> Outcome:
    """Decide a matching event of a stateful rule at `now` (the event's arrival time)."""
    if spec.digest is not None:
        return _collect(store, rule_id, spec.digest, seen, now)
    if spec.threshold is None:
        return _suppress(store, rule_id, spec, seen, Firing(None, {}), seen.time, f"{rule_id}:{seen.jti}")
    threshold = spec.threshold
    if threshold.distinct and seen.distinct is None:
        return Outcome(None, f"not counted: threshold.distinct {threshold.distinct} is missing in this event")
    key = group_key(seen.group)
    entry = WindowEntry(seen.jti, seen.time, None if seen.distinct is None else str(seen.distinct), seen.item)
    window = store.window_add(rule_id, key, entry, threshold, now)
    if not window.fired:
        reason = _NOT_COUNTED.get(window.status) or f"count {window.count} of {threshold.count} within " \
                                                    f"{format_duration(threshold.within)}"
        return Outcome(None, reason, window.status)
    context = {"count": window.count, "window": format_duration(threshold.within), "group": list(seen.group),
               "first_seen": _utc(window.first_seen), "last_seen": _utc(window.last_seen), "events": window.items}
    token = firing_id(rule_id, key, window.first_seen)
    outcome = _suppress(store, rule_id, spec, seen, Firing(token, context), window.last_seen, token)
    return Outcome(outcome.firing, outcome.reason, window.status)


def _suppress(store: StateStore, rule_id: str, spec: StatefulSpec, seen: Observation, firing: Firing,
              at: float, token: str) -> Outcome:
    """Let the firing through unless the group fired less than suppress.for ago (in event time)."""
    return suppress_firing(store, rule_id, spec.suppress, seen.suppress_group, seen.time, firing, at, token)


def suppress_firing(store: StateStore, rule_id: str, suppress: Suppress | None, group: Sequence[Any], time: float,
                    firing: Firing, at: float, token: str) -> Outcome:
    """`firing` unless the suppress group fired less than suppress.for before `time` (event time); the
    suppression then lasts until `at` + suppress.for. `token` lets the same firing through again."""
    if suppress is None:
        return Outcome(firing)
    if store.suppress_try(rule_id, group_key(group), at + suppress.for_, time, token):
        return Outcome(firing)
    return Outcome(None, f"suppressed: fired for this group less than {format_duration(suppress.for_)} ago")


def period_of(digest: Digest, time: float, now: float) -> float:
    """The period an event belongs to: its event time's, unless that period is already due (a late
    event), then the current one, so a period is never sent twice."""
    start = math.floor(time / digest.every) * digest.every
    if start + digest.every + digest.late <= now:
        start = math.floor(now / digest.every) * digest.every
    return start


def _collect(store: StateStore, rule_id: str, digest: Digest, seen: Observation, now: float) -> Outcome:
    start = period_of(digest, seen.time, now)
    end = start + digest.every
    added = store.digest_add(rule_id, start, end, end + digest.late, seen.jti, seen.time,
                             seen.item, digest.max_items)
    state = "added to" if added else "already in"
    return Outcome(None, f"{state} the digest period starting {_utc(start).isoformat()}")


def digest_firing(rule_id: str, digest: Digest, batch: DigestBatch) -> Firing:
    """The firing of one due digest period: `events` in event-time order, `period` and `count`."""
    period = {"start": _utc(batch.period_start), "end": _utc(batch.period_end), "every": format_duration(digest.every)}
    return Firing(f"{rule_id}:digest:{math.floor(batch.period_start)}",
                  {"events": batch.items, "period": period, "count": batch.total})


def fire_due_digests(store: StateStore, digests: Mapping[str, Digest], now: float,
                     send: Callable[[str, Firing], None]) -> int:
    """Fire every due digest period: `send(rule_id, firing)` must enqueue durably (keyed by firing.id);
    only then is the period forgotten. Returns how many periods fired."""
    fired = 0
    for rule_id, digest in digests.items():
        for batch in store.digest_due(rule_id, now):
            send(rule_id, digest_firing(rule_id, digest, batch))
            store.digest_done(rule_id, batch.period_start)
            fired += 1
    return fired
