"""`idhooks migrate --from sqlite:///PATH --to redis://HOST:PORT/DB`: move a deployment's state into Redis."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from engine.config.durations import parse_duration
from engine.errors import UsageError
from engine.secrets import redact_url
from engine.config.storeurl import REDIS_SCHEMES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "migrate", help="copy a SQLite store into Redis (stop every idhooks process first)",
        description="Copy events within retention (the de-duplication state), pending jobs, dead letters, "
                    "subscriptions, the quarantine and rule state from a SQLite store into a Redis store. Stop every "
                    "idhooks process of both stores first. Safe to run again: what Redis already holds is kept.")
    parser.add_argument("--from", dest="source", required=True, metavar="sqlite:///PATH", help="the SQLite store")
    parser.add_argument("--to", dest="target", required=True, metavar="redis://HOST:PORT/DB",
                        help="the Redis store (redis://, rediss://, unix:// or redis+sentinel://)")
    parser.add_argument("--group", default="idhooks", help="the deployment's store.group (default: idhooks)")
    parser.add_argument("--ca-file", type=Path, help="rediss:// only: the CA that signed Redis's certificate "
                                                     "(store.ca_file)")
    parser.add_argument("--cert-file", type=Path, help="rediss:// only: a client certificate (store.cert_file)")
    parser.add_argument("--key-file", type=Path, help="rediss:// only: its private key (store.key_file)")
    parser.add_argument("--retention", default="30d", help="copy events newer than this (default: 30d)")
    parser.set_defaults(func=run)


def _duration(value: str, option: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _source_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise UsageError(f"--from: expected sqlite:///PATH (migrate copies a SQLite store into Redis), got {url!r}")
    path = Path(url[len("sqlite:///"):])
    if not path.is_file():
        raise UsageError(f"--from: no SQLite store at {path}")
    return path


def run(args: argparse.Namespace) -> int:
    retention = _duration(args.retention, "--retention")
    path = _source_path(args.source)
    if not args.target.startswith(REDIS_SCHEMES):
        raise UsageError(f"--to: expected redis://HOST:PORT/DB, rediss://..., unix://... or "
                          f"redis+sentinel://HOST:26379/MASTER_NAME, got {redact_url(args.target)!r}")
    from engine.store.migration import migrate
    from engine.store.redis import RedisStore
    from engine.store.sqlite import SQLiteStore

    for option, tls_file in (("--ca-file", args.ca_file), ("--cert-file", args.cert_file),
                             ("--key-file", args.key_file)):
        if tls_file is not None and not tls_file.is_file():
            raise UsageError(f"{option}: no such file: {tls_file}")
    target = RedisStore(args.target, group=args.group, ca_file=args.ca_file, cert_file=args.cert_file,
                        key_file=args.key_file)
    source = SQLiteStore(path)
    try:
        report = migrate(source, target, now=time.time(), retention=retention)
    finally:
        source.close()
        target.close()
    print(f"copied {args.source} into {target.url} (group {args.group!r}):")
    for kind, tally in report.kinds.items():
        print(f"  {kind:<22}{tally.copied:>8} copied{tally.skipped:>8} already there")
    return 0
