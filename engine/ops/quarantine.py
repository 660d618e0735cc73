"""Refused deliveries kept for re-verification: `idhooks quarantine`, the API's /quarantine and the
console's quarantine page. Re-verifying uses the intake's own verify-then-parse with the current secrets."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from engine.config.settings import Config
from engine.errors import NotFoundError, RequestError
from engine.metrics import Metrics
from engine.receive.intake import Intake
from engine.store.base import QuarantineEntry, Store


@dataclass(frozen=True)
class Reverified:
    id: str
    ingested: bool
    message: str  # what happened, e.g. "verified, event <jti> accepted" or "still refused (...); kept"
    jti: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ingested": self.ingested, "message": self.message, "jti": self.jti}


def entry_json(entry: QuarantineEntry) -> dict[str, Any]:
    return {"id": entry.id, "webhook": entry.webhook, "received_at": entry.received_at, "reason": entry.reason,
            "bytes": len(entry.body)}


def reverify(config: Config, store: Store, entry_id: str | None = None,
             metrics: Metrics | None = None) -> list[Reverified]:
    """Re-check entry `entry_id` (every entry when None) with the current secrets; ingest those that verify.
    NotFoundError when that entry does not exist."""
    entries = store.quarantine_list()
    if entry_id is not None:
        entries = [e for e in entries if e.id == entry_id]
        if not entries:
            raise NotFoundError(f"no quarantined delivery with id {entry_id!r} (see idhooks quarantine list)")
    intake = Intake(store, quarantine=config.quarantine, dedup_window=config.store.dedup_window,
                    metrics=metrics or Metrics(), clock=time.time)
    return [_reverify_one(entry, config, intake) for entry in entries]


def _reverify_one(entry: QuarantineEntry, config: Config, intake: Intake) -> Reverified:
    webhook = config.webhook(entry.webhook)
    if webhook is None:
        return Reverified(entry.id, False, f"webhook {entry.webhook!r} is no longer configured; kept")
    try:
        envelope = intake.verified_envelope(webhook, entry.headers, entry.body)
    except RequestError as exc:
        return Reverified(entry.id, False, f"still refused ({exc}); kept")
    result = intake.store_envelope(webhook.name, envelope, entry.body)
    if result.outcome == "conflict":
        return Reverified(entry.id, False, f"verified, but event {envelope.jti} is stored with different "
                                           "content; kept", envelope.jti)
    intake.store.quarantine_remove(entry.id)
    return Reverified(entry.id, True, f"verified, event {envelope.jti} {result.outcome}", envelope.jti)


def drop(store: Store, entry_id: str) -> None:
    if not store.quarantine_remove(entry_id):
        raise NotFoundError(f"no quarantined delivery with id {entry_id!r} (see idhooks quarantine list)")
