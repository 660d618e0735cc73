"""`idhooks subscriptions [--config PATH] [--json] [--check]`: what the hub verified, denied or reported, per
webhook and topic, with lease expiry; and warnings: a lease that ends within `subscriptions.warn_before` (the
subscription must be renewed in the console before then: nothing renews it by itself), a webhook silent for
longer than its `silence_after`, and events accepted for a webhook after its every topic was unsubscribed.
With `--check` the exit status is 1 when there is any warning (for cron and monitoring).

Records come from unauthenticated requests: their number and length are bounded when they are stored, and
every field is printed with control characters escaped, so the listing cannot be flooded or rewrite the
terminal."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from datetime import datetime, timezone

from engine.cli.commands import add_config_option
from engine.config.settings import Config, load_config
from engine.config.durations import format_duration
from engine.store import open_store, subscriptions
from engine.store.base import Store

SHOWN_AFTER_UNSUBSCRIBE = 20
"""Events accepted after an unsubscription listed per webhook (the count covers up to COUNTED of them)."""
COUNTED = 1000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("subscriptions", help="show hub verifications, denials and silent webhooks")
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when there is a warning (a lease ending within subscriptions.warn_before, a "
                             "silent webhook, events after an unsubscription)")
    parser.set_defaults(func=run)


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def printable(text: str) -> str:
    """`text` with control characters (CR, LF, ESC, ...) and lone surrogates escaped, for a terminal."""
    if text.isprintable() and text.isascii():
        return text
    return "".join(ch if ch.isprintable() and not "\ud800" <= ch <= "\udfff" else ascii(ch)[1:-1] for ch in text)


def _after_unsubscribe(store: Store, config: Config, records: list) -> list[dict]:
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
                         f"{_when(lease.expires_at)}: renew the subscription (re-activate the webhook in the "
                         "console); the hub does not renew it by itself")
    for item in silent:
        since = "never" if item["last_accepted"] is None else _when(item["last_accepted"])
        lines.append(f"WARNING: webhook {item['webhook']!r} has accepted no event for over "
                     f"{format_duration(item['silence_after'])} (last: {since}); check the subscription in the console")
    for item in after:
        more = "+" if item["events"] >= COUNTED else ""
        lines.append(f"WARNING: webhook {item['webhook']!r} accepted {item['events']}{more} event(s) after every "
                     f"topic was unsubscribed ({_when(item['unsubscribed_at'])}), e.g. "
                     f"{', '.join(printable(j) for j in item['jtis'][:3])}: a subscription idhooks no longer "
                     "knows is still delivering; check the console")
    return lines


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, offline=True)
    store = open_store(config.store)
    try:
        records = store.list_subscriptions()
        last = store.last_accepted()
        after = _after_unsubscribe(store, config, records)
    finally:
        store.close()
    now = time.time()
    silent = []
    for webhook in config.webhooks:
        seen = last.get(webhook.name)
        if seen is None or now - seen > webhook.silence_after:
            silent.append({"webhook": webhook.name, "last_accepted": seen,
                           "silence_after": webhook.silence_after})
    warnings = _warnings(config, subscriptions.leases(records), silent, after, now)
    if args.json:
        print(json.dumps({"subscriptions": [asdict(r) for r in records], "last_accepted": last, "silent": silent,
                          "after_unsubscribe": after, "warnings": warnings}, default=str, indent=2))
    else:
        _print(records, warnings)
    return 1 if args.check and warnings else 0


def _print(records: list, warnings: list[str]) -> None:
    if not records:
        print("No verification requests recorded yet. Activate the webhook in the Asgardeo console, or run "
              "`idhooks simulate verify`.")
    else:
        print(f"{'WEBHOOK':<16} {'TOPIC':<56} {'MODE':<12} {'AT':<21} {'LEASE EXPIRES':<21} REASON")
        for r in records:
            print(f"{r.webhook:<16} {printable(r.topic):<56} {r.mode:<12} {_when(r.at):<21} "
                  f"{_when(r.lease_expires_at):<21} {printable(r.reason)}")
    for line in warnings:
        print(line)
