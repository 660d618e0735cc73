"""Matched decisions -> typed jobs for the delivery queue (engine.store.base.NewJob).

Used by the processor (an event's matches) and by the stateful rules' digest tick (a period's firing), so
a job is built in exactly one place.
"""

from __future__ import annotations

from engine.match.ruleset import Decision
from engine.store.base import NewJob


def jobs_for(jti: str, received_at: float, decision: Decision) -> list[NewJob]:
    """One job per rendered action of a matched decision. The key is the Idempotency-Key: jti:rule:index,
    or firing-id:index for a stateful rule's firing (stable across the events of one window; a digest's
    firing has no event and passes its firing id as `jti`). The rule's `retry:` override leaves the
    message and becomes the job's own `retry` field. A shadow decision (`mode: shadow`) queues none."""
    if decision.shadow:
        return []
    prefix = decision.firing_id or f"{jti}:{decision.rule_id}"
    jobs = []
    for action in decision.actions:
        message = dict(action.fields)
        retry = message.pop("retry", None)
        jobs.append(NewJob(key=f"{prefix}:{action.index}", destination=action.destination or "",
                           action=action.type, message=message, rule=decision.rule_id, jti=jti,
                           index=action.index, retry=retry, received_at=received_at))
    return jobs
