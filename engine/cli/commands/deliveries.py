"""`idhooks deliveries [--status pending|failed|dead]`: what the delivery queue holds and why jobs fail."""

from __future__ import annotations

import argparse
import datetime
import json

from engine.cli.commands import add_config_option
from engine.cli.commands._store import store_from_args
from engine.store.base import Job

STATUSES = ("pending", "failed", "dead")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("deliveries", help="list delivery jobs (pending, failed, dead letters)",
                                   description="List delivery jobs, newest first. 'failed' = pending with at "
                                               "least one failed attempt; 'dead' = dead letters.")
    add_config_option(parser)
    parser.add_argument("--status", choices=STATUSES, help="only jobs in this state (default: all)")
    parser.add_argument("--limit", type=int, default=100, help="at most this many jobs (default 100)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        jobs = store.list_jobs(args.status, args.limit)
    finally:
        store.close()
    for job in jobs:
        print(json.dumps(as_dict(job), ensure_ascii=False) if args.json else as_line(job))
    if not jobs and not args.json:
        print(f"no {args.status + ' ' if args.status else ''}delivery jobs")
    return 0


def as_dict(job: Job) -> dict:
    return {"id": job.id, "key": job.key, "status": job.status, "type": job.action,
            "destination": job.destination, "attempts": job.attempts, "created_at": job.created_at,
            "due_at": job.due_at, "last_error": job.last_error, "last_response": job.last_response,
            "ordered_by": job.ordered_by}


def as_line(job: Job) -> str:
    due = datetime.datetime.fromtimestamp(job.due_at, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    target = f"{job.action or '?'}->{job.destination or '-'}"
    line = f"{job.id}  {job.status:<7}  attempts={job.attempts}  {target}  key={job.key}  due={due}"
    if job.ordered_by:  # the job waits while an earlier one of this key is pending
        line += f"  ordered_by={job.ordered_by[:60]!r}"
    return line + (f"\n    last error: {job.last_error}" if job.last_error else "")
