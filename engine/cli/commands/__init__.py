"""One module per `idhooks` subcommand; see engine/cli/__init__.py."""

from __future__ import annotations

import argparse


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """The `--config PATH` option every command shares."""
    parser.add_argument("--config", default="config.yaml", metavar="PATH",
                        help="the idhooks config file (default: ./config.yaml)")
