"""How the Redis store writes records as hash fields and reads them back, and how its URL is shown.

Times are written with repr() so every digit survives (see engine/store/redis_lua.py); JSON for lists and
mappings, raw bytes for bodies.
"""

from __future__ import annotations

import json
from typing import Any

from engine.store.base import Job, NewJob, QuarantineEntry, StoredEvent


def num(value: float) -> str:
    """A float as Redis will store it: repr keeps every digit (Lua's tostring would not)."""
    return repr(float(value))


def text(value: bytes | None) -> str:
    return value.decode() if value is not None else ""


def event_from_hash(jti: str, h: dict[bytes, bytes]) -> StoredEvent:
    decisions = h.get(b"decisions")
    processed = h.get(b"processed_at")
    return StoredEvent(jti=jti, webhook=text(h[b"webhook"]), iat_ms=float(h[b"iat_ms"]),
                       received_at=float(h[b"received_at"]), uris=tuple(json.loads(h[b"uris"])),
                       body=h[b"body"], status=text(h[b"status"]),
                       decisions=json.loads(decisions) if decisions else None,
                       processed_at=float(processed) if processed else None,
                       attempts=int(h.get(b"attempts") or 0))


def job_from_hash(h: dict[bytes, bytes]) -> Job:
    status, attempts = text(h[b"status"]), int(h[b"attempts"])
    return Job(id=text(h[b"id"]), key=text(h[b"key"]), destination=text(h[b"destination"]),
               **NewJob.fields_from_json(json.loads(h[b"payload"])), status="failed" if status == "pending" and attempts else status,
               attempts=attempts, created_at=float(h[b"created_at"]), due_at=float(h[b"due_at"]),
               last_error=text(h.get(b"last_error")), last_response=text(h.get(b"last_response")),
               lease_owner=text(h.get(b"lease_owner")),
               window_start=float(h[b"window_start"]) if h.get(b"window_start") else None)


def quarantine_from_hash(entry_id: str, h: dict[bytes, bytes]) -> QuarantineEntry:
    return QuarantineEntry(id=entry_id, webhook=text(h[b"webhook"]), received_at=float(h[b"received_at"]),
                           reason=text(h[b"reason"]), headers=json.loads(h[b"headers"]), body=h[b"body"],
                           source=text(h.get(b"source", b"")))


def event_fields(event: StoredEvent) -> list[Any]:
    """An event's hash as field/value pairs, status and decisions included (for copying one as it is)."""
    fields: list[Any] = ["webhook", event.webhook, "iat_ms", num(event.iat_ms), "received_at", num(event.received_at),
                         "uris", json.dumps(list(event.uris)), "body", event.body, "status", event.status]
    if event.decisions is not None:
        fields += ["decisions", json.dumps(event.decisions)]
    if event.processed_at is not None:
        fields += ["processed_at", num(event.processed_at)]
    return fields


def job_fields(job: Job, done_at: float | None) -> list[Any]:
    """A job's hash as field/value pairs, unleased ('failed' is stored as pending with attempts > 0)."""
    status = "pending" if job.status == "failed" else job.status
    fields: list[Any] = ["id", job.id, "key", job.key, "destination", job.destination,
                         "payload", json.dumps(job.to_json()), "status", status, "attempts", job.attempts,
                         "created_at", num(job.created_at), "due_at", num(job.due_at),
                         "last_error", job.last_error, "last_response", job.last_response, "lease_owner", ""]
    if done_at is not None:
        fields += ["done_at", num(done_at)]
    if job.window_start is not None:
        fields += ["window_start", num(job.window_start)]
    if job.order_key:  # its place in the order chain: its event's arrival, as when it was queued
        fields += ["order_key", job.order_key,
                   "order_at", num(job.received_at if job.received_at is not None else job.created_at)]
    return fields
