"""`idhooks deadletters retry ID|--all` and `idhooks deadletters drop ID`: act on the dead-letter list
(list it with `idhooks deliveries --status dead`). A retried job is pending again, due now, with a fresh
retry window, and keeps its key, so the target still sees the same Idempotency-Key."""

from __future__ import annotations

import argparse
import sys
import time

from engine.cli.commands import add_config_option
from engine.cli.commands._store import store_from_args
from engine.errors import NotFoundError
from engine.ops import deliveries


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
        count = deliveries.retry_dead(store, None if args.all else args.id, time.time())
    except NotFoundError as exc:
        return _missing(exc)
    finally:
        store.close()
    print(f"queued {count} dead letter{'s' if count != 1 else ''} for delivery")
    return 0


def run_drop(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        deliveries.drop_dead(store, args.id)
    except NotFoundError as exc:
        return _missing(exc)
    finally:
        store.close()
    print(f"dropped dead letter {args.id}")
    return 0


def _missing(exc: NotFoundError) -> int:
    print(f"idhooks: {exc}", file=sys.stderr)
    return 1
