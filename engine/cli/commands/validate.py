"""`idhooks validate [--config PATH] [RULES_PATH...]`: check config.yaml (its destinations included, built as
`serve` builds them), the rule files and the rule tests without starting a server. Exit 0 when valid, 1 with every problem listed (file:line: ...). The webhook
secret is not needed (a fresh clone has none yet): a secret that cannot be read is a note, not a failure,
since only `idhooks serve` uses it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from actions import build_actions
from actions.base import ActionContext
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
    secret_problems = _secret_problems(args.config)
    try:
        config = load_config(args.config, offline=True)
    except ConfigError as exc:  # list every problem, the secrets' too
        raise ConfigError(exc.problems + secret_problems) from None
    build_actions(config.destinations, ActionContext(source=str(config.path)))
    paths = args.rules or list(config.rules.paths)
    ruleset = load_for_config(config, paths)
    tests = load_rule_tests(test_files(paths))
    print(f"OK: {args.config}, {len(ruleset.rules)} rules in {len(ruleset.sources)} files, "
          f"{len(tests)} rule tests")
    for note in secret_problems:
        print(f"note: {note} (only `idhooks serve` needs it; `make run` creates var/webhook-secret "
              "and var/console-token)",
              file=sys.stderr)
    return 0


def _secret_problems(config_path: Path) -> list[str]:
    """Problems only `serve` would report: reading the webhook secrets (a fresh clone has none yet)."""
    def problems(**kwargs: bool) -> list[str]:
        try:
            load_config(config_path, **kwargs)
        except ConfigError as exc:
            return exc.problems
        return []

    offline = problems(offline=True)
    return [problem for problem in problems() if problem not in offline]
