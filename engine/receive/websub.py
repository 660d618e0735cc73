"""WebSub verification of intent (W3C WebSub §5.3) and the hub's denial / error notices. No Falcon here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

from engine.config.settings import WebhookConfig
from engine.errors import RequestError
from engine.store.base import Store, SubscriptionRecord
from engine.receive.topics import topic_allowed

log = logging.getLogger("idhooks.websub")

NOTICE_MODES = ("denied", "hub-error")
VERIFY_MODES = ("subscribe", "unsubscribe")


class TopicNotAgreed(RequestError):
    """404: the subscriber does not agree to this topic (WebSub: answer 404 with no echo)."""

    status = 404


@dataclass(frozen=True)
class VerificationAnswer:
    body: str  # the challenge to echo, or "" for notices
    mode: str
    lease_expires_at: float | None = None


def _lease(value: str | None) -> int | None:
    try:
        lease = int(str(value))
    except (TypeError, ValueError):
        return None  # garbage in hub.lease_seconds is ignored
    return lease if lease > 0 else None


def answer(webhook: WebhookConfig, params: Mapping[str, str], store: Store, now: float) -> VerificationAnswer:
    """Decide the answer to a hub GET and record it per webhook and topic."""
    mode = params.get("hub.mode", "")
    topic = params.get("hub.topic", "")
    if mode in NOTICE_MODES:
        reason = params.get("hub.reason", "")
        store.record_subscription(SubscriptionRecord(webhook.name, topic, mode, now, None, reason))
        log.warning("hub notice: subscription %s", mode, extra={"webhook": webhook.name, "topic": topic,
                                                               "reason": reason})
        return VerificationAnswer("", mode)
    if mode not in VERIFY_MODES:
        raise RequestError("missing or unknown hub.mode: expected subscribe, unsubscribe, denied or hub-error")
    challenge = params.get("hub.challenge", "")
    if not topic or not challenge:
        raise RequestError("missing hub.topic or hub.challenge")
    if not topic_allowed(topic, webhook.topics):
        store.record_subscription(SubscriptionRecord(webhook.name, topic, "refused", now, None,
                                                     "topic not in webhooks[].topics"))
        log.warning("refused verification for a topic not agreed to", extra={"webhook": webhook.name,
                                                                            "topic": topic})
        raise TopicNotAgreed("topic not agreed to")
    lease = _lease(params.get("hub.lease_seconds")) if mode == "subscribe" else None
    expires = now + lease if lease else None
    store.record_subscription(SubscriptionRecord(webhook.name, topic, mode, now, expires, ""))
    log.info("verified %s", mode, extra={"webhook": webhook.name, "topic": topic, "lease_seconds": lease})
    return VerificationAnswer(challenge, mode, expires)
