"""`idhooks subscriptions [--config PATH] [--json]`: what the hub verified, denied or reported, per webhook
and topic, with lease expiry; and webhooks that have been silent for longer than their `silence_after`."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone

from engine.cli.commands import add_config_option
from engine.config.settings import load_config
from engine.config.durations import format_duration
from engine.ops.subscriptions import subscription_report
from engine.store import open_store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("subscriptions", help="show hub verifications, denials and silent webhooks")
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config.store)
    try:
        report = subscription_report(config, store, time.time())
    finally:
        store.close()
    records = report["subscriptions"]
    silent = report["silent"]
    if args.json:
        print(json.dumps({k: report[k] for k in ("subscriptions", "last_accepted", "silent")}, default=str, indent=2))
        return 0
    if not records:
        print("No verification requests recorded yet. Activate the webhook in the Asgardeo console, or run "
              "`idhooks simulate verify`.")
    else:
        print(f"{'WEBHOOK':<16} {'TOPIC':<56} {'MODE':<12} {'AT':<21} {'LEASE EXPIRES':<21} REASON")
        for r in records:
            print(f"{r['webhook']:<16} {r['topic']:<56} {r['mode']:<12} {_when(r['at']):<21} "
                  f"{_when(r['lease_expires_at']):<21} {r['reason']}")
    for item in silent:
        since = "never" if item["last_accepted"] is None else _when(item["last_accepted"])
        print(f"WARNING: webhook {item['webhook']!r} has accepted no event for over "
              f"{format_duration(item['silence_after'])} (last: {since}); check the subscription in the console")
    return 0
