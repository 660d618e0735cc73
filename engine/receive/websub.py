"""WebSub verification of intent (W3C WebSub §5.3) and the hub's denial / error notices. No Falcon here.

These GETs carry no signature: anyone who can reach a webhook path can send them. So nothing they carry
is kept unless its topic is one the webhook agreed to (`webhooks[].topics`), every field kept is bounded
in length, the records per webhook are bounded in number (engine/store/subscriptions.py), and the mode
reaches metrics only as one of a closed set of labels (`mode_label`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping

from engine.config.settings import WebhookConfig
from engine.errors import RequestError, StoreError, TopicNotAgreedError
from engine.store import subscriptions
from engine.store.base import Store, SubscriptionRecord
from engine.receive.topics import topic_allowed

log = logging.getLogger("idhooks.websub")

NOTICE_MODES = ("denied", "hub-error")
VERIFY_MODES = ("subscribe", "unsubscribe")
MAX_TOPIC_CHARS = 256
"""A longer hub.topic is refused (400): Asgardeo's topics (tenant, organization id, channel) stay under 200."""
MAX_REASON_CHARS = 512
"""A notice's hub.reason is kept up to this many characters (marked as cut)."""
MAX_LEASE_SECONDS = 10 * 365 * 86400
"""A hub.lease_seconds beyond ten years is refused (400) rather than overflowing the expiry time."""


@dataclass(frozen=True)
class VerificationAnswer:
    body: str  # the challenge to echo, or "" for notices
    mode: str
    lease_expires_at: float | None = None
    evicted: int = 0  # records dropped to stay within subscriptions.max_records


def mode_label(mode: str) -> str:
    """The metric label of a hub.mode: the mode itself when known, else 'none' or 'other'."""
    if mode in NOTICE_MODES + VERIFY_MODES:
        return mode
    return "other" if mode else "none"


def _lease(value: str | None) -> int | None:
    text = str(value or "").strip()
    if not text.isascii() or not text.isdigit():
        return None  # garbage (or a negative number) in hub.lease_seconds is ignored
    if len(text) > 10 or int(text) > MAX_LEASE_SECONDS:
        raise RequestError(f"hub.lease_seconds {text[:20]}{'...' if len(text) > 20 else ''} is out of range: "
                           f"at most {MAX_LEASE_SECONDS} (ten years)")
    lease = int(text)
    return lease if lease > 0 else None


def _reason(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + " [cut]"


def answer(webhook: WebhookConfig, params: Mapping[str, str], store: Store, now: float,
           max_records: int = 200) -> VerificationAnswer:
    """Decide the answer to a hub GET and record it per webhook and agreed topic."""
    mode = params.get("hub.mode", "")
    topic = params.get("hub.topic", "")
    if len(topic) > MAX_TOPIC_CHARS:
        raise RequestError(f"hub.topic is longer than {MAX_TOPIC_CHARS} characters")
    agreed = bool(topic) and topic_allowed(topic, webhook.topics)
    if mode in NOTICE_MODES:
        reason = _reason(params.get("hub.reason", ""))
        log.warning("hub notice: subscription %s", mode, extra={"webhook": webhook.name, "topic": topic,
                                                               "reason": reason, "kept": agreed})
        if not agreed:  # answered (the hub expects 200) but not kept: anyone can send these
            return VerificationAnswer("", mode)
        dropped = subscriptions.record(store, SubscriptionRecord(webhook.name, topic, mode, now, None, reason),
                                       max_records)
        return VerificationAnswer("", mode, evicted=dropped)
    if mode not in VERIFY_MODES:
        raise RequestError("missing or unknown hub.mode: expected subscribe, unsubscribe, denied or hub-error")
    challenge = params.get("hub.challenge", "")
    if not topic or not challenge:
        raise RequestError("missing hub.topic or hub.challenge")
    if not agreed:  # refused, not kept (the caller logs and counts it)
        raise TopicNotAgreedError("topic not agreed to")
    lease = _lease(params.get("hub.lease_seconds")) if mode == "subscribe" else None
    expires = now + lease if lease else None
    dropped = subscriptions.record(store, SubscriptionRecord(webhook.name, topic, mode, now, expires, ""),
                                   max_records)
    log.info("verified %s", mode, extra={"webhook": webhook.name, "topic": topic, "lease_seconds": lease})
    return VerificationAnswer(challenge, mode, expires, evicted=dropped)


class UnsubscribedWebhooks:
    """Which webhooks had every verified topic unsubscribed (events still arriving for them deserve a
    warning), read from the store at most every `ttl` seconds so intake adds no read per event."""

    def __init__(self, store: Store, clock: Callable[[], float], ttl: float = 30.0) -> None:
        self.store, self.clock, self.ttl = store, clock, ttl
        self._records: list[SubscriptionRecord] = []
        self._read_at: float | None = None

    def since(self, webhook: str) -> float | None:
        """When `webhook` was unsubscribed, or None while it is subscribed (or never verified)."""
        if self.stale():
            self.refresh()
        return subscriptions.unsubscribed_since(self._records, webhook)

    def stale(self) -> bool:
        """Whether the next since() reads the store (the async intake does that read in a thread first)."""
        return self._read_at is None or self.clock() - self._read_at >= self.ttl

    def refresh(self) -> None:
        now = self.clock()
        try:
            self._records = self.store.list_subscriptions()
        except StoreError:
            pass  # a warning is not worth failing intake over: keep what was read last
        self._read_at = now

    def changed(self) -> None:
        """A verification was recorded: read again at the next event."""
        self._read_at = None
