"""`idhooks` command line. Each subcommand is one module in engine/cli/commands/ with a
`register(subparsers)` function that adds its parser and sets `func(args) -> int` (the exit code)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from engine import __version__
from engine.cli import commands
from engine.errors import ConfigError, StoreError, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idhooks", description="Automation engine for Asgardeo / WSO2 Identity Server webhook events.")
    parser.add_argument("--version", action="version", version=f"idhooks {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{info.name}").register(subparsers)
    _know_yourself(parser)
    return parser


def _know_yourself(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command's parser lands in args.command_parser, for the usage line of a UsageError a
    command raises after parsing (the deepest subcommand's defaults win)."""
    parser.set_defaults(command_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _know_yourself(sub)


def _tolerant_output() -> None:
    """Stored events may hold lone surrogates (old databases, or a future bug): print them as `\\udXXX`
    rather than crash in the middle of `idhooks events` or `replay`."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    _tolerant_output()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        args.command_parser.print_usage(sys.stderr)
        print(f"{args.command_parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"idhooks: configuration error:\n{exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"idhooks: store error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `idhooks catalog | head`: the reader left, nothing more to say
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
