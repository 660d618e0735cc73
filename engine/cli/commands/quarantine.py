"""`idhooks quarantine list|reverify|drop`: deliveries refused for their signature, kept so that a wrong
secret costs no genuine event. After fixing the secret in config.yaml, `reverify` checks every entry against
the current secrets and ingests those that now verify (they are then processed like any event)."""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone

from engine.cli.commands import add_config_option
from engine.config.settings import load_config
from engine.errors import RequestError
from engine.receive.intake import Intake
from engine.metrics import Metrics
from engine.store import open_store
from engine.store.base import QuarantineEntry, Store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("quarantine", help="list, re-verify or drop refused deliveries")
    sub = parser.add_subparsers(dest="quarantine_command", metavar="ACTION")
    sub.required = True
    for name, help_text in (("list", "list refused deliveries"),
                            ("reverify", "re-check refused deliveries with the current secrets and ingest "
                                         "those that verify"),
                            ("drop", "delete a refused delivery")):
        action = sub.add_parser(name, help=help_text)
        add_config_option(action)
        if name == "drop":
            action.add_argument("id", help="the entry id shown by `idhooks quarantine list`")
        action.set_defaults(func=run)


def _list(store: Store) -> int:
    entries = store.quarantine_list()
    if not entries:
        print("The quarantine is empty.")
        return 0
    print(f"{'ID':<17} {'WEBHOOK':<14} {'RECEIVED':<21} {'SOURCE':<16} {'BYTES':>8}  REASON")
    for e in entries:
        at = datetime.fromtimestamp(e.received_at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        print(f"{e.id:<17} {e.webhook:<14} {at:<21} {e.source or '-':<16} {len(e.body):>8}  {e.reason}")
    return 0


def _reverify_one(entry: QuarantineEntry, config, intake: Intake) -> str:
    webhook = config.webhook(entry.webhook)
    if webhook is None:
        return f"{entry.id}: webhook {entry.webhook!r} is no longer configured; kept"
    try:
        envelope = intake.verified_envelope(webhook, entry.headers, entry.body)
    except RequestError as exc:
        return f"{entry.id}: still refused ({exc}); kept"
    result = intake.store_envelope(webhook.name, envelope, entry.body)
    if result.outcome == "conflict":
        return f"{entry.id}: verified, but event {envelope.jti} is stored with different content; kept"
    intake.store.quarantine_remove(entry.id)
    return f"{entry.id}: verified, event {envelope.jti} {result.outcome}"


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config.store)
    try:
        if args.quarantine_command == "list":
            return _list(store)
        if args.quarantine_command == "drop":
            if store.quarantine_remove(args.id):
                print(f"Dropped {args.id}.")
                return 0
            print(f"No quarantined delivery with id {args.id!r}.")
            return 1
        intake = Intake(store, quarantine=config.quarantine, dedup_window=config.store.dedup_window,
                        metrics=Metrics(), clock=time.time)
        entries = store.quarantine_list()
        lines = [_reverify_one(entry, config, intake) for entry in entries]
        print("\n".join(lines) if lines else "The quarantine is empty.")
        ingested = sum("verified" in line for line in lines)
        print(f"{ingested} of {len(entries)} ingested. A running server processes them within a second.")
        return 0
    finally:
        store.close()
