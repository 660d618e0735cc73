"""Store backends chosen by URL: `sqlite:///path` (default); Redis: `redis://host:port/db`, `rediss://`,
`unix://` or through Sentinel `redis+sentinel://host:26379/master` (engine/store/redis_connect.py); PostgreSQL:
`postgresql://host:5432/dbname` or `postgres://...` (engine/store/postgres.py). The table of schemes is
engine.config.storeurl.STORE_BACKENDS; each backend module has `open_backend(StoreConfig)`."""

from __future__ import annotations

import importlib
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from engine.config.settings import StoreConfig
from engine.errors import ConfigError
from engine.store.base import Store
from engine.config.storeurl import STORE_BACKENDS


def open_store(config: StoreConfig) -> Store:
    """The store for `config.url`, from the backend module engine.config.storeurl.STORE_BACKENDS names for
    its scheme (imported only when asked for: Redis is an optional dependency)."""
    for prefixes, module in STORE_BACKENDS.items():
        if config.url.startswith(prefixes):
            backend: Any = importlib.import_module(module)
            store: Store = backend.open_backend(config)
            return store
    raise ConfigError("store.url: unsupported store URL: use sqlite:///PATH, redis://HOST:PORT/DB or "
                      "postgresql://HOST:5432/DBNAME")


@contextmanager
def scratch_store() -> Iterator[Store]:
    """A fresh SQLite store in a temporary folder, deleted afterwards: `idhooks test`, rule tests and
    `idhooks replay` count thresholds and digests in it without touching the deployment's store."""
    from engine.store.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory(prefix="idhooks-test-") as folder:
        store = SQLiteStore(Path(folder) / "state.db")
        try:
            yield store
        finally:
            store.close()
