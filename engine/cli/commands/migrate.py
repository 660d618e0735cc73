"""`idhooks migrate --from URL --to URL`: copy a deployment's state between any two stores (SQLite, Redis,
PostgreSQL)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from engine.config.durations import parse_duration
from engine.config.settings import StoreConfig
from engine.config.storeurl import POSTGRES_SCHEMES, REDIS_SCHEMES, SQLITE_SCHEME
from engine.errors import UsageError
from engine.secrets import Secret, read_secret_file, redact_url

_URLS = "sqlite:///PATH, redis://HOST:PORT/DB (rediss://, unix://, redis+sentinel://) or postgresql://HOST:5432/DBNAME"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "migrate", help="copy a deployment's state between stores (stop every idhooks process first)",
        description="Copy events within retention (the de-duplication state), pending jobs, dead letters, "
                    "subscriptions, the quarantine and rule state from one store into another: any two of SQLite, "
                    "Redis and PostgreSQL. Stop every idhooks process of both stores first. Safe to run again: what "
                    "the target already holds is kept.")
    parser.add_argument("--from", dest="source", required=True, metavar="URL", help=f"the store to copy: {_URLS}")
    parser.add_argument("--to", dest="target", required=True, metavar="URL", help="the store to copy into")
    parser.add_argument("--group", default="idhooks",
                        help="the target deployment's store.group (Redis, PostgreSQL; default: idhooks)")
    parser.add_argument("--from-group", help="the source deployment's store.group (default: --group)")
    for side, whose in (("", "the target's"), ("from-", "the source's")):
        parser.add_argument(f"--{side}ca-file", type=Path, help=f"{whose} store.ca_file (TLS)")
        parser.add_argument(f"--{side}cert-file", type=Path, help=f"{whose} store.cert_file (TLS client certificate)")
        parser.add_argument(f"--{side}key-file", type=Path, help=f"{whose} store.key_file (its private key)")
        parser.add_argument(f"--{side}password-file", type=Path, help=f"{whose} store.password_file (PostgreSQL)")
    parser.add_argument("--retention", default="30d", help="copy events newer than this (default: 30d)")
    parser.set_defaults(func=run)


def _duration(value: str, option: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _store_config(option: str, url: str, group: str, files: dict[str, Path | None], must_exist: bool) -> StoreConfig:
    """The StoreConfig of one side; UsageError naming the option for a bad URL or a missing file."""
    if url.startswith(SQLITE_SCHEME):
        path = Path(url[len(SQLITE_SCHEME):])
        if must_exist and not path.is_file():
            raise UsageError(f"{option}: no SQLite store at {path}")
    elif not url.startswith((*REDIS_SCHEMES, *POSTGRES_SCHEMES)):
        raise UsageError(f"{option}: expected {_URLS}, got {redact_url(url)!r}")
    prefix = "--" if option == "--to" else "--from-"
    for name, path in files.items():
        if path is not None and not path.is_file():
            raise UsageError(f"{prefix}{name.replace('_', '-')}: no such file: {path}")
    password = files.pop("password_file")
    if password is not None and not url.startswith(POSTGRES_SCHEMES):
        raise UsageError(f"{prefix}password-file: only used with a PostgreSQL store")
    return StoreConfig(url=url, group=group, ca_file=files["ca_file"], cert_file=files["cert_file"],
                       key_file=files["key_file"],
                       password=Secret(read_secret_file(password), str(password)) if password else None)


def run(args: argparse.Namespace) -> int:
    retention = _duration(args.retention, "--retention")
    keys = ("ca_file", "cert_file", "key_file", "password_file")
    source_cfg = _store_config("--from", args.source, args.from_group or args.group,
                               {k: getattr(args, f"from_{k}") for k in keys}, must_exist=True)
    target_cfg = _store_config("--to", args.target, args.group, {k: getattr(args, k) for k in keys}, must_exist=False)
    if (source_cfg.url, source_cfg.group) == (target_cfg.url, target_cfg.group):
        raise UsageError("--to: the same store as --from (give another URL, or another --group)")
    from engine.store import open_store
    from engine.store.migration import migrate

    source = open_store(source_cfg)
    try:
        target = open_store(target_cfg)
        try:
            report = migrate(source, target, now=time.time(), retention=retention)
        finally:
            target.close()
    finally:
        source.close()
    where = f" (group {args.group!r})" if not args.target.startswith(SQLITE_SCHEME) else ""
    print(f"copied {redact_url(args.source)} into {target.url}{where}:")
    for kind, tally in report.kinds.items():
        print(f"  {kind:<22}{tally.copied:>8} copied{tally.skipped:>8} already there")
    return 0
