"""`idhooks catalog [ALIAS]`: the built-in event types (alias, URI, description), the names rules and `simulate`
use, and their variants (`alias/variant`: the same event without optional fields); with an alias or
variant, its sample event, so rule authors can see the fields they can match on."""

from __future__ import annotations

import argparse
import json
import sys

from engine import catalog
from engine.config.schema import suggest


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("catalog", help="list the built-in WSO2 event types",
                                   description="List the event catalog: alias, event URI and what it means.")
    parser.add_argument("alias", nargs="?", metavar="ALIAS", help="print this event type's (or ALIAS/VARIANT's) "
                                                               "sample event")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {alias, uri, description, "
                                                            "variants}")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    entries = catalog.entries()
    if args.alias:
        return _show_sample(args.alias)
    if args.json:
        print(json.dumps([{"alias": e.alias, "uri": e.uri, "description": e.description,
                           "variants": catalog.variants_of(e.alias)} for e in entries.values()], indent=2))
        return 0
    alias_width = max(len(alias) for alias in entries)
    uri_width = max(len(e.uri) for e in entries.values())
    print(f"{'ALIAS':<{alias_width}}  {'URI':<{uri_width}}  DESCRIPTION")
    for entry in entries.values():
        print(f"{entry.alias:<{alias_width}}  {entry.uri:<{uri_width}}  {entry.description}")
    variants = catalog.variants()
    if variants:
        width = max(len(name) for name in variants)
        print(f"\n{'VARIANT':<{width}}  DESCRIPTION")
        for name, entry in variants.items():
            print(f"{name:<{width}}  {entry.description}")
    return 0


def _show_sample(alias: str) -> int:
    names = catalog.sample_names()
    if alias not in names:
        print(f"idhooks catalog: error: unknown event type {alias!r}{suggest(alias, names)}; "
              "run `idhooks catalog` for the list", file=sys.stderr)
        return 2
    print(json.dumps(catalog.sample(alias), indent=2, ensure_ascii=False))
    return 0
