"""What the hub verified, denied or reported, per webhook and topic, and the warnings about it: a lease that
ends within `subscriptions.warn_before`, a webhook silent for longer than its `silence_after`, events accepted
after every topic of a webhook was unsubscribed. `idhooks subscriptions`, GET /api/v1/subscriptions and the
console's overview all show this one report."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from engine.config.durations import format_duration
from engine.config.settings import Config
from engine.store import subscriptions
from engine.store.base import Store, SubscriptionRecord

SHOWN_AFTER_UNSUBSCRIBE = 20
"""Events accepted after an unsubscription listed per webhook (the count covers up to COUNTED of them)."""
COUNTED = 1000


def when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def printable(text: str) -> str:
    """`text` with control characters (CR, LF, ESC, ...) and lone surrogates escaped, for a terminal."""
    if text.isprintable() and text.isascii():
        return text
    return "".join(ch if ch.isprintable() and not "\ud800" <= ch <= "\udfff" else ascii(ch)[1:-1] for ch in text)


def _after_unsubscribe(store: Store, config: Config, records: list[SubscriptionRecord]) -> list[dict[str, Any]]:
    found = []
    for webhook in config.webhooks:
        since = subscriptions.unsubscribed_since(records, webhook.name)
        if since is None:
            continue
        events = [e for e in store.list_events(since=since, limit=COUNTED) if e.webhook == webhook.name]
        if events:
            found.append({"webhook": webhook.name, "unsubscribed_at": since, "events": len(events),
                          "jtis": [e.jti for e in events[:SHOWN_AFTER_UNSUBSCRIBE]]})
    return found


def _warnings(config: Config, leases: list, silent: list, after: list, now: float) -> list[str]:
    lines = []
    for lease in leases:
        if lease.expires_at - now <= config.subscriptions.warn_before:
            verb = "ended" if lease.expires_at <= now else "ends"
            lines.append(f"WARNING: the lease of webhook {lease.webhook!r} topic {printable(lease.topic)!r} {verb} "
                         f"{when(lease.expires_at)}: renew the subscription (re-activate the webhook in the "
                         "console); the hub does not renew it by itself")
    for item in silent:
        since = "never" if item["last_accepted"] is None else when(item["last_accepted"])
        lines.append(f"WARNING: webhook {item['webhook']!r} has accepted no event for over "
                     f"{format_duration(item['silence_after'])} (last: {since}); check the subscription in the console")
    for item in after:
        more = "+" if item["events"] >= COUNTED else ""
        lines.append(f"WARNING: webhook {item['webhook']!r} accepted {item['events']}{more} event(s) after every "
                     f"topic was unsubscribed ({when(item['unsubscribed_at'])}), e.g. "
                     f"{', '.join(printable(j) for j in item['jtis'][:3])}: a subscription idhooks no longer "
                     "knows is still delivering; check the console")
    return lines


def subscription_report(config: Config, store: Store, now: float) -> dict[str, Any]:
    """{subscriptions, last_accepted, silent, after_unsubscribe, warnings, webhooks}; `webhooks` has one row per
    configured webhook with its last event and its latest lease expiry."""
    records = store.list_subscriptions()
    last = store.last_accepted()
    after = _after_unsubscribe(store, config, records)
    leases = subscriptions.leases(records)
    silent, webhooks = [], []
    for webhook in config.webhooks:
        seen = last.get(webhook.name)
        is_silent = seen is None or now - seen > webhook.silence_after
        if is_silent:
            silent.append({"webhook": webhook.name, "last_accepted": seen, "silence_after": webhook.silence_after})
        expiries = [lease.expires_at for lease in leases if lease.webhook == webhook.name]
        webhooks.append({"webhook": webhook.name, "path": webhook.path, "last_event_at": seen,
                         "lease_expires_at": max(expiries) if expiries else None, "silent": is_silent})
    return {"subscriptions": [asdict(r) for r in records], "last_accepted": last, "silent": silent,
            "after_unsubscribe": after, "warnings": _warnings(config, leases, silent, after, now),
            "webhooks": webhooks}
