"""The delivery queue and its dead letters: `idhooks deliveries`, `idhooks deadletters`, the API's
/deliveries and /deadletters and the console's deliveries page."""

from __future__ import annotations

from engine.errors import InvalidInputError, NotFoundError
from engine.ops import cursor
from engine.ops.events import MAX_LIMIT, Page, job_json
from engine.store.base import Store

STATUSES = ("pending", "failed", "dead")


def list_deliveries(store: Store, status: str | None = None, destination: str | None = None,
                    limit: int = 100, after: str | None = None) -> Page:
    """Jobs newest first ('failed' = pending with a failed attempt; 'dead' = dead letters)."""
    if status is not None and status not in STATUSES:
        raise InvalidInputError(f"status: expected one of {', '.join(STATUSES)}")
    limit = max(1, min(limit, MAX_LIMIT))
    jobs = store.jobs_before(status, destination, cursor.decode(after), limit + 1)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return Page([job_json(j) for j in jobs], cursor.encode(jobs[-1].created_at, jobs[-1].id) if more else None)


def retry_dead(store: Store, job_id: str | None, now: float) -> int:
    """Dead letter `job_id` (every one when None) pending again, due now, with a fresh retry window; how
    many. NotFoundError when that one is not a dead letter."""
    count = store.requeue_dead(job_id, now)
    if job_id is not None and count == 0:
        raise NotFoundError(missing_dead_letter(job_id))
    return count


def drop_dead(store: Store, job_id: str) -> None:
    """Delete dead letter `job_id` for good; NotFoundError when there is none."""
    if not store.drop_dead(job_id):
        raise NotFoundError(missing_dead_letter(job_id))


def missing_dead_letter(job_id: str) -> str:
    return f"no dead letter with id {job_id!r} (list them: idhooks deliveries --status dead)"
