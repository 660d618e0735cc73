"""`idhooks validate [--config PATH] [RULES_PATH...]`: check config.yaml, the rule files and the rule tests
without starting a server. Exit 0 when valid, 1 with every problem listed (file:line: ...). The webhook
secret is not needed (a fresh clone has none yet): a secret that cannot be read is a note, not a failure,
since only `idhooks serve` uses it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.commands import add_config_option
from engine.config.settings import load_config
from engine.errors import ConfigError
from engine.match.loader import load_for_config
from engine.offline.ruletests import load_rule_tests, test_files


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="check config.yaml and rule files without a server",
                                   description=__doc__)
    add_config_option(parser)
    parser.add_argument("rules", nargs="*", type=Path, metavar="RULES_PATH",
                        help="rule files or folders to check instead of the config's rules.paths")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, offline=True)
    paths = args.rules or list(config.rules.paths)
    ruleset = load_for_config(config, paths)
    tests = load_rule_tests(test_files(paths))
    print(f"OK: {args.config}, {len(ruleset.rules)} rules in {len(ruleset.sources)} files, "
          f"{len(tests)} rule tests")
    for note in _secret_notes(args.config):
        print(f"note: {note} (only `idhooks serve` needs it; `make run` creates var/webhook-secret)",
              file=sys.stderr)
    return 0


def _secret_notes(config_path: Path) -> list[str]:
    """Problems reading the webhook secrets, which serve (not the offline commands) would report."""
    try:
        load_config(config_path)
    except ConfigError as exc:
        return exc.problems
    return []
