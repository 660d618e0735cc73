"""`idhooks quarantine list|reverify|drop`: deliveries refused for their signature, kept so that a wrong
secret costs no genuine event. After fixing the secret in config.yaml, `reverify` checks every entry against
the current secrets and ingests those that now verify (they are then processed like any event)."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from engine.cli.commands import add_config_option
from engine.config.settings import load_config
from engine.errors import NotFoundError
from engine.ops import quarantine
from engine.store import open_store
from engine.store.base import Store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("quarantine", help="list, re-verify or drop refused events")
    sub = parser.add_subparsers(dest="quarantine_command", metavar="ACTION")
    sub.required = True
    for name, help_text in (("list", "list refused events"),
                            ("reverify", "re-check refused events with the current secrets and ingest "
                                         "those that verify"),
                            ("drop", "delete a refused event")):
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


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config.store)
    try:
        if args.quarantine_command == "list":
            return _list(store)
        if args.quarantine_command == "drop":
            try:
                quarantine.drop(store, args.id)
            except NotFoundError:
                print(f"No quarantined delivery with id {args.id!r}.")
                return 1
            print(f"Dropped {args.id}.")
            return 0
        results = quarantine.reverify(config, store)
        print("\n".join(f"{r.id}: {r.message}" for r in results) if results else "The quarantine is empty.")
        ingested = sum(r.ingested for r in results)
        print(f"{ingested} of {len(results)} ingested. A running server processes them within a second.")
        return 0
    finally:
        store.close()
