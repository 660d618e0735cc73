"""Opening the configured store for commands that read or change it (deliveries, deadletters)."""

from __future__ import annotations

import argparse

from engine.config.settings import load_config
from engine.store import open_store
from engine.store.base import Store


def store_from_args(args: argparse.Namespace) -> Store:
    """The store named by `--config`; ConfigError / StoreError reach engine/cli/__init__.py's handler."""
    return open_store(load_config(args.config, offline=True).store)
