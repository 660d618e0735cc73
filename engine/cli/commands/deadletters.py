"""`idhooks deadletters retry ID|--all` and `idhooks deadletters drop ID`: act on the dead-letter list
(list it with `idhooks deliveries --status dead`). A retried job is pending again, due now, with a fresh
retry window, and keeps its key, so the target still sees the same Idempotency-Key."""

from __future__ import annotations

import argparse
import sys
import time

from engine.cli.commands import add_config_option
from engine.cli.commands._store import store_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("deadletters", help="retry or drop dead-lettered deliveries",
                                   description="Retry or drop dead letters; list them with "
                                               "`idhooks deliveries --status dead`.")
    actions = parser.add_subparsers(dest="deadletters_action", metavar="ACTION")
    actions.required = True
    retry = actions.add_parser("retry", help="queue dead letters again (one ID or --all)")
    add_config_option(retry)
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", metavar="ID", help="the job id shown by `idhooks deliveries`")
    which.add_argument("--all", action="store_true", help="every dead letter")
    retry.set_defaults(func=run_retry)
    drop = actions.add_parser("drop", help="delete one dead letter for good")
    add_config_option(drop)
    drop.add_argument("id", metavar="ID")
    drop.set_defaults(func=run_drop)


def run_retry(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        count = store.requeue_dead(None if args.all else args.id, time.time())
    finally:
        store.close()
    if count == 0 and not args.all:
        return _missing(args.id)
    print(f"queued {count} dead letter{'s' if count != 1 else ''} for delivery")
    return 0


def run_drop(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        dropped = store.drop_dead(args.id)
    finally:
        store.close()
    if not dropped:
        return _missing(args.id)
    print(f"dropped dead letter {args.id}")
    return 0


def _missing(job_id: str) -> int:
    print(f"idhooks: no dead letter with id {job_id!r} (list them: idhooks deliveries --status dead)",
          file=sys.stderr)
    return 1
