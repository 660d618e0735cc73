"""`idhooks catalog`: the built-in event types (alias, URI, description), the names rules and `simulate` use."""

from __future__ import annotations

import argparse
import json

from engine import catalog


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("catalog", help="list the built-in WSO2 event types",
                                   description="List the event catalog: alias, event URI and what it means.")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {alias, uri, description}")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    entries = list(catalog.entries().values())
    if args.json:
        print(json.dumps([{"alias": e.alias, "uri": e.uri, "description": e.description} for e in entries],
                         indent=2))
        return 0
    alias_width = max(len(e.alias) for e in entries)
    uri_width = max(len(e.uri) for e in entries)
    print(f"{'ALIAS':<{alias_width}}  {'URI':<{uri_width}}  DESCRIPTION")
    for entry in entries:
        print(f"{entry.alias:<{alias_width}}  {entry.uri:<{uri_width}}  {entry.description}")
    return 0
