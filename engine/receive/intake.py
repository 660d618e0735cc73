"""Event intake: verify first, parse second, store durably, then acknowledge. No Falcon here.

A delivery that fails verification is kept in the bounded quarantine (engine/store), so that after an operator
fixes a wrong secret, `idhooks quarantine reverify` can still ingest it. A verified delivery that repeats a
stored event's jti with different content is a conflict, not a duplicate: it is answered like a duplicate
(the hub must not retry it) but logged, counted and kept in the quarantine for inspection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from engine.catalog import entries as catalog_entries
from engine.catalog import uri_to_alias
from engine.config.settings import QuarantineConfig, WebhookConfig
from engine.verify.envelope import Envelope, RecentEnvelopes, parse_envelope
from engine.errors import SignatureError, StoreError
from engine.metrics import Metrics
from engine.verify.signature import SIGNATURE_HEADERS, find_signature, verify
from engine.store.base import DUPLICATE, IncomingEvent, QuarantineEntry, Store

log = logging.getLogger("idhooks.intake")

CONFLICT = "conflict"

Blocking = Callable[..., Awaitable[Any]]
"""`await blocking(fn, *args)`: fn(*args) run in a thread, off the event loop."""


def _resolve(future: asyncio.Future[str], outcome: str | None, error: BaseException | None, jti: str) -> None:
    """Hand the group commit's answer to the waiting request (in the event loop: futures are not thread-safe)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(StoreError(f"could not commit event {jti!r}: {error}"))
    else:
        future.set_result(str(outcome))


@dataclass
class IntakeResult:
    outcome: str  # accepted | duplicate | conflict | stale
    envelope: Envelope
    types: list[str] = field(default_factory=list)


def event_types(envelope: Envelope) -> list[str]:
    """Aliases of the envelope's events (the URI itself when it is not a WSO2 profile URI)."""
    return [uri_to_alias(uri) or uri for uri in envelope.uris]


class Intake:
    """Verifies and stores the event POSTs of every webhook."""

    def __init__(self, store: Store, *, quarantine: QuarantineConfig, dedup_window: float,
                 metrics: Metrics, clock: Callable[[], float], recent: RecentEnvelopes | None = None) -> None:
        self.store = store
        self.recent = recent
        self.quarantine = quarantine
        self.dedup_window = dedup_window
        self.metrics = metrics
        self.clock = clock

    def receive(self, webhook: WebhookConfig, headers: Mapping[str, str], body: bytes,
                source: str = "") -> IntakeResult:
        """Verify, parse and store one event POST from `source` (the sender's address). Raises
        SignatureError/PayloadError/StoreError."""
        envelope = self.checked_envelope(webhook, headers, body, source)
        outcome = self.store.ingest(self.incoming(webhook.name, envelope, body), self.dedup_window)
        return self.settle(webhook, headers, body, source, envelope, outcome)

    async def receive_async(self, webhook: WebhookConfig, headers: Mapping[str, str], body: bytes, source: str,
                            blocking: Blocking) -> IntakeResult:
        """`receive` for the async intake (engine/receive/front.py): verify and parse in the event loop,
        await the group commit (a coroutine waits, not a thread), and run in `blocking`'s threads only what
        reads or writes the store outside it (the quarantine, a duplicate's check, a backend without
        `ingest_soon`). The same outcome, the same rows, the same errors as `receive`."""
        try:
            envelope = self.verified_envelope(webhook, headers, body)
        except SignatureError as exc:
            await blocking(self._quarantine, webhook, headers, body, str(exc), source)
            raise
        self._warn_odd(webhook, envelope)
        incoming = self.incoming(webhook.name, envelope, body)
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[str] = loop.create_future()

        def done(outcome: str | None, error: BaseException | None) -> None:  # in the store's writer thread
            try:
                loop.call_soon_threadsafe(_resolve, committed, outcome, error, incoming.jti)
            except RuntimeError:  # the loop is closed: nobody waits for this answer any more
                pass

        if self.store.ingest_soon(incoming, self.dedup_window, done):
            outcome = await committed
        else:
            outcome = str(await blocking(self.store.ingest, incoming, self.dedup_window))
        if outcome == DUPLICATE:  # reads the stored copy, and may quarantine a conflict
            result: IntakeResult = await blocking(self.settle, webhook, headers, body, source, envelope, outcome)
            return result
        return self.settle(webhook, headers, body, source, envelope, outcome)

    def checked_envelope(self, webhook: WebhookConfig, headers: Mapping[str, str], body: bytes,
                         source: str) -> Envelope:
        """The verified envelope; a delivery that fails verification is quarantined and refused."""
        try:
            envelope = self.verified_envelope(webhook, headers, body)
        except SignatureError as exc:
            self._quarantine(webhook, headers, body, str(exc), source)
            raise
        self._warn_odd(webhook, envelope)
        return envelope

    def _warn_odd(self, webhook: WebhookConfig, envelope: Envelope) -> None:
        if envelope.warnings:
            self.metrics.iat_seconds.labels(webhook.name).inc()
            log.warning("odd but usable event", extra={"webhook": webhook.name, "jti": envelope.jti,
                                                       "warnings": list(envelope.warnings)})

    def settle(self, webhook: WebhookConfig, headers: Mapping[str, str], body: bytes, source: str,
               envelope: Envelope, outcome: str) -> IntakeResult:
        """The result of a stored event; a conflicting duplicate is logged and quarantined."""
        result = self.result(envelope, outcome)
        if result.outcome == CONFLICT:
            log.warning("jti conflict: a stored event has this jti with different content; kept in the quarantine",
                        extra={"webhook": webhook.name, "jti": envelope.jti})
            self._quarantine(webhook, headers, body, f"jti conflict: event {envelope.jti!r} is stored with "
                                                     "different content (not a retry of it)", source)
        return result

    @staticmethod
    def verified_envelope(webhook: WebhookConfig, headers: Mapping[str, str], body: bytes) -> Envelope:
        """Verify first, parse second (also used by `quarantine reverify`, which must not re-quarantine)."""
        verify(body, find_signature(headers), webhook.secrets)
        return parse_envelope(body)

    def store_envelope(self, webhook: str, envelope: Envelope, body: bytes) -> IntakeResult:
        """Store an already verified envelope (also used by `quarantine reverify`)."""
        outcome = self.store.ingest(self.incoming(webhook, envelope, body), self.dedup_window)
        return self.result(envelope, outcome)

    def incoming(self, webhook: str, envelope: Envelope, body: bytes) -> IncomingEvent:
        """The row to store; the parsed envelope goes to the processor's `recent` before the commit (the
        processor may claim the event right after it)."""
        if self.recent is not None:
            self.recent.put(body, envelope)
        return IncomingEvent(jti=envelope.jti, webhook=webhook, iat_ms=envelope.iat_ms,
                             received_at=self.clock(), uris=envelope.uris, body=body)

    def result(self, envelope: Envelope, outcome: str) -> IntakeResult:
        """Count an accepted event by type; tell a conflicting duplicate from a retry."""
        if outcome == DUPLICATE and self._conflicts(envelope):
            outcome = CONFLICT
        types = event_types(envelope)
        if outcome == "accepted":
            for alias in types:
                # a label per catalog type only: a sender could make up any number of profile URIs
                self.metrics.child(self.metrics.events, alias if alias in catalog_entries() else "unknown").inc()
        return IntakeResult(outcome=outcome, envelope=envelope, types=types)

    def _conflicts(self, envelope: Envelope) -> bool:
        """Whether the stored event of this jti has other content (the hub may re-serialise a retry, so the
        decoded JSON is compared, not the bytes)."""
        stored = self.store.get_event(envelope.jti)
        if stored is None:  # pruned: only its de-duplication mark is left
            return False
        try:
            return bool(json.loads(stored.body) != envelope.claims)
        except ValueError:
            return True

    def _quarantine(self, webhook: WebhookConfig, headers: Mapping[str, str], body: bytes, reason: str,
                    source: str) -> None:
        kept = {k: v for k, v in headers.items() if k.lower() in SIGNATURE_HEADERS + ("content-type",)}
        entry = QuarantineEntry(id=uuid.uuid4().hex[:16], webhook=webhook.name, received_at=self.clock(),
                                reason=reason, headers=kept, body=body, source=source[:64])
        try:
            result = self.store.quarantine_add(entry, self.quarantine.max_entries, self.quarantine.max_bytes)
        except Exception:
            log.exception("could not quarantine a refused event", extra={"webhook": webhook.name})
            return
        if result.evicted:
            self.metrics.quarantine_evicted.inc(result.evicted)
            log.warning("quarantine full: dropped the oldest refused events of the source with the most",
                        extra={"webhook": webhook.name, "dropped": result.evicted,
                               "dropped_bytes": result.evicted_bytes})
        if not result.stored:
            log.warning("refused event too large to quarantine", extra={"webhook": webhook.name,
                                                                          "bytes": len(body)})
