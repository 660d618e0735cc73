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

from engine.cli.commands import add_config_option
from engine.config.settings import load_config
from engine.ops.subscriptions import printable, subscription_report, when
from engine.store import open_store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("subscriptions", help="show hub verifications, denials and silent webhooks")
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when there is a warning (a lease ending within subscriptions.warn_before, a "
                             "silent webhook, events after an unsubscription)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, offline=True)
    store = open_store(config.store)
    try:
        report = subscription_report(config, store, time.time())
    finally:
        store.close()
    if args.json:
        print(json.dumps({k: report[k] for k in ("subscriptions", "last_accepted", "silent", "after_unsubscribe",
                                                 "warnings")}, default=str, indent=2))
    else:
        _print(report["subscriptions"], report["warnings"])
    return 1 if args.check and report["warnings"] else 0


def _print(records: list, warnings: list[str]) -> None:
    if not records:
        print("No verification requests recorded yet. Activate the webhook in the Asgardeo console, or run "
              "`idhooks simulate verify`.")
    else:
        print(f"{'WEBHOOK':<16} {'TOPIC':<56} {'MODE':<12} {'AT':<21} {'LEASE EXPIRES':<21} REASON")
        for r in records:
            print(f"{r['webhook']:<16} {printable(r['topic']):<56} {r['mode']:<12} {when(r['at']):<21} "
                  f"{when(r['lease_expires_at']):<21} {printable(r['reason'])}")
    for line in warnings:
        print(line)
