"""The subscription records kept per webhook, kept bounded, and what they say about each topic's lease.

Anyone who can reach a webhook path can send the hub's verification GETs, so every record is bounded: its
topic and reason by length (engine/receive/websub.py), its number per webhook by `subscriptions.max_records`
(the records seen longest ago go first) and its age by `store.retention` (an active lease is kept).
Backend-neutral: built on list_subscriptions() and remove_subscription() of every store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from engine.store.base import Store, SubscriptionRecord

VERIFIED_MODES = ("subscribe", "unsubscribe")


@dataclass(frozen=True)
class Lease:
    webhook: str
    topic: str
    expires_at: float


def record(store: Store, entry: SubscriptionRecord, max_records: int) -> int:
    """Keep `entry` (the latest per webhook, topic and mode) and drop the webhook's records seen longest ago
    beyond `max_records`; how many were dropped."""
    store.record_subscription(entry)
    mine = [r for r in store.list_subscriptions() if r.webhook == entry.webhook]
    if len(mine) <= max_records:
        return 0
    mine.sort(key=lambda r: (r.at, r.topic, r.mode))
    excess = mine[:len(mine) - max_records]
    return sum(store.remove_subscription(r.webhook, r.topic, r.mode) for r in excess)


def prune(store: Store, now: float, retention: float) -> int:
    """Drop records older than `retention`, except a subscription whose lease has not ended that long ago."""
    cutoff = now - retention
    old = [r for r in store.list_subscriptions()
           if r.at < cutoff and not (r.mode == "subscribe" and (r.lease_expires_at is None
                                                                or r.lease_expires_at >= cutoff))]
    return sum(store.remove_subscription(r.webhook, r.topic, r.mode) for r in old)


def latest_verified(records: Iterable[SubscriptionRecord]) -> dict[tuple[str, str], SubscriptionRecord]:
    """(webhook, topic) -> its latest subscribe or unsubscribe record."""
    latest: dict[tuple[str, str], SubscriptionRecord] = {}
    for r in records:
        key = (r.webhook, r.topic)
        if r.mode in VERIFIED_MODES and (key not in latest or r.at >= latest[key].at):
            latest[key] = r
    return latest


def leases(records: Iterable[SubscriptionRecord]) -> list[Lease]:
    """The leases of topics whose latest verification is a subscription with a lease, by expiry."""
    found = [Lease(r.webhook, r.topic, r.lease_expires_at) for r in latest_verified(records).values()
             if r.mode == "subscribe" and r.lease_expires_at is not None]
    return sorted(found, key=lambda lease: (lease.expires_at, lease.webhook, lease.topic))


def unsubscribed_since(records: Iterable[SubscriptionRecord], webhook: str) -> float | None:
    """When the webhook's last subscribed topic was unsubscribed, if every topic it verified now is; None
    while any topic is subscribed or nothing was verified."""
    mine = [r for (w, _), r in latest_verified(records).items() if w == webhook]
    if not mine or any(r.mode == "subscribe" for r in mine):
        return None
    return max(r.at for r in mine)
