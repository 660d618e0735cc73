"""What the hub verified, denied or reported, per webhook and topic, and webhooks that went silent:
`idhooks subscriptions`, GET /api/v1/subscriptions and the console's overview."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from engine.config.settings import Config
from engine.store.base import Store


def subscription_report(config: Config, store: Store, now: float) -> dict[str, Any]:
    """{subscriptions: [...], last_accepted: {webhook: time}, silent: [...], webhooks: [...]}; `webhooks`
    has one row per configured webhook with its last event and the latest lease expiry."""
    records = store.list_subscriptions()
    last = store.last_accepted()
    silent, webhooks = [], []
    for webhook in config.webhooks:
        seen = last.get(webhook.name)
        is_silent = seen is None or now - seen > webhook.silence_after
        if is_silent:
            silent.append({"webhook": webhook.name, "last_accepted": seen, "silence_after": webhook.silence_after})
        leases = [r.lease_expires_at for r in records if r.webhook == webhook.name and r.lease_expires_at]
        webhooks.append({"webhook": webhook.name, "path": webhook.path, "last_event_at": seen,
                         "lease_expires_at": max(leases) if leases else None, "silent": is_silent})
    return {"subscriptions": [asdict(r) for r in records], "last_accepted": last, "silent": silent,
            "webhooks": webhooks}
