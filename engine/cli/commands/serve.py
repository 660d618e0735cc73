"""`idhooks serve [--config PATH] [--host H] [--port P] [--processes N|auto] [--cpu-pinning auto|always|never]
[--log-json]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli.commands import add_config_option
from engine.cpus import PIN_MODES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="receive webhook events and run the rules")
    add_config_option(parser)
    parser.add_argument("--host", help="bind address (default: server.host)")
    parser.add_argument("--port", type=int, help="port (default: server.port)")
    parser.add_argument("--processes", type=processes_value, metavar="N|auto",
                        help="serve with N processes sharing the port; auto = one per CPU this process may use "
                             "(default: server.processes, 1)")
    parser.add_argument("--cpu-pinning", choices=PIN_MODES,
                        help="keep the Python threads on one CPU and granian's on the others; with several "
                             "processes, each on a CPU of its own (auto: when there is one CPU per process); never: "
                             "leave them to the scheduler (default: server.cpu_pinning, auto)")
    parser.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.server import serve

    return serve(Path(args.config), args.host, args.port, args.log_json, args.processes, args.cpu_pinning)


def processes_value(text: str) -> int | str:
    """`auto` or a whole number of at least 1; anything else is a usage error (exit 2)."""
    if text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected a number of processes (1 or more) or 'auto', not {text!r}")
