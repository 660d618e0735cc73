"""`idhooks validate [--config PATH] [RULES_PATH...]`: check config.yaml (its destinations included, as
`serve` builds them), the rule files and the rule tests without starting a server. Exit 0 when valid, 1 with every problem listed (file:line: ...)."""

from __future__ import annotations

import argparse
from pathlib import Path

from actions import build_actions
from actions.base import ActionContext
from engine.cli.commands import add_config_option
from engine.config.settings import load_config
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
    config = load_config(args.config)
    build_actions(config.destinations, ActionContext(source=str(config.path)))
    paths = args.rules or list(config.rules.paths)
    ruleset = load_for_config(config, paths)
    tests = load_rule_tests(test_files(paths))
    print(f"OK: {args.config}, {len(ruleset.rules)} rules in {len(ruleset.sources)} files, "
          f"{len(tests)} rule tests")
    return 0
