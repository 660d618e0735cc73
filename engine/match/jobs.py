"""Matched decisions -> typed jobs for the delivery queue (engine.store.base.NewJob).

Used by the processor (an event's matches) and by the stateful rules' digest tick (a period's firing), so
a job is built in exactly one place.
"""

from __future__ import annotations

from engine.match.rule_actions import CAPTURE_NONCE_FIELD
from engine.match.ruleset import Decision
from engine.store.base import NewJob


def jobs_for(jti: str, received_at: float, decision: Decision) -> list[NewJob]:
    """One job per rendered action of a matched decision. The key is the Idempotency-Key: jti:rule:index,
    or firing-id:index for a stateful rule's firing (stable across the events of one window; a digest's
    firing has no event and passes its firing id as `jti`). The rule's `retry:` override, `ordered_by:`
    key and the captured-values nonce leave the message and become the job's own fields. A shadow decision (`mode: shadow`) queues none."""
    if decision.shadow:
        return []
    prefix = decision.firing_id or f"{jti}:{decision.rule_id}"
    jobs = []
    for action in decision.actions:
        message = dict(action.fields)
        retry = message.pop("retry", None)
        ordered_by = str(message.pop("ordered_by", "") or "")
        nonce = str(message.pop(CAPTURE_NONCE_FIELD, "") or "")
        jobs.append(NewJob(key=f"{prefix}:{action.index}", destination=action.destination or "",
                           action=action.type, message=message, rule=decision.rule_id, jti=jti,
                           index=action.index, retry=retry, received_at=received_at, ordered_by=ordered_by,
                           captured_nonce=nonce))
    return jobs
