"""Store backends chosen by URL: `sqlite:///path` (default), or Redis: `redis://host:port/db`, `rediss://`,
`unix://` or through Sentinel `redis+sentinel://host:26379/master` (engine/store/redis_connect.py)."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from engine.config.settings import StoreConfig
from engine.errors import ConfigError
from engine.store.base import Store
from engine.config.storeurl import REDIS_SCHEMES


def open_store(config: StoreConfig) -> Store:
    """The store for `config.url`. Redis is imported only when asked for."""
    url = config.url
    if url.startswith("sqlite:///"):
        from engine.store.sqlite import SQLiteStore

        return SQLiteStore(url[len("sqlite:///"):])
    if url.startswith(REDIS_SCHEMES):
        from engine.store.redis import RedisStore

        return RedisStore(url, group=config.group, spool_dir=config.spool_dir, ca_file=config.ca_file,
                          cert_file=config.cert_file, key_file=config.key_file)
    raise ConfigError(f"store.url: unsupported store URL {url!r}: use sqlite:///PATH or redis://HOST:PORT/DB")


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
