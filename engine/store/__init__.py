"""Store backends chosen by URL: `sqlite:///path` (default); Redis: `redis://host:port/db`, `rediss://`,
`unix://` or through Sentinel `redis+sentinel://host:26379/master` (engine/store/redis_connect.py); PostgreSQL:
`postgresql://host:5432/dbname` or `postgres://...` (engine/store/postgres.py)."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from engine.config.settings import StoreConfig
from engine.errors import ConfigError
from engine.store.base import Store
from engine.config.storeurl import POSTGRES_SCHEMES, REDIS_SCHEMES


def open_store(config: StoreConfig) -> Store:
    """The store for `config.url`. Redis and PostgreSQL are imported only when asked for."""
    url = config.url
    if url.startswith("sqlite:///"):
        from engine.store.sqlite import SQLiteStore

        return SQLiteStore(url[len("sqlite:///"):])
    if url.startswith(REDIS_SCHEMES):
        from engine.store.redis import RedisStore

        return RedisStore(url, group=config.group, spool_dir=config.spool_dir, ca_file=config.ca_file,
                          cert_file=config.cert_file, key_file=config.key_file)
    if url.startswith(POSTGRES_SCHEMES):
        from engine.store.postgres import PostgresStore

        return PostgresStore(url, group=config.group, spool_dir=config.spool_dir, password=config.password,
                             ca_file=config.ca_file, cert_file=config.cert_file, key_file=config.key_file)
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
