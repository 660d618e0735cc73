"""The store backends every backend-neutral suite runs against, in one place: a new backend is one entry in
BACKENDS and one branch in each helper below."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from engine.store.base import Store

BACKENDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis),
            pytest.param("postgres", marks=pytest.mark.postgres)]
"""pytest params: use as @pytest.fixture(params=BACKENDS)."""


def open_backend(request: pytest.FixtureRequest, name: str, tmp_path: Path) -> Iterator[Store]:
    """Yield a fresh store of backend `name` (its own file, Redis group or PostgreSQL schema), cleaned up after."""
    if name == "sqlite":
        from engine.store.sqlite import SQLiteStore

        store: Store = SQLiteStore(tmp_path / "var" / "idhooks.db")
        yield store
        store.close()
        return
    yield request.getfixturevalue({"redis": "redis_store", "postgres": "postgres_store"}[name])


def store_url(request: pytest.FixtureRequest, name: str) -> str:
    """The store.url a config of backend `name` uses ('' for SQLite: basic_config's default file)."""
    if name == "sqlite":
        return ""
    return request.getfixturevalue({"redis": "redis_available", "postgres": "postgres_available"}[name])


def backend_config(name: str, directory: Path, url: str, group: str, port: int = 8080, extra: str = "") -> Path:
    """tests.conftest.basic_config on backend `name` (deployment `group` for the shared ones)."""
    from tests.conftest import basic_config

    if name == "sqlite":
        return basic_config(directory, port=port, extra=extra)
    if name == "redis":
        from tests.redisutil import redis_config

        return redis_config(directory, url, group, port, extra=extra)
    from tests.pgutil import postgres_config

    return postgres_config(directory, url, group, port, extra=extra)


def drop_deployment(name: str, url: str, group: str, spool: Path) -> None:
    """Remove what deployment `group` of a shared backend holds (nothing to do for SQLite's tmp file)."""
    if name == "redis":
        from tests.redisutil import delete_group, open_redis_store

        store = open_redis_store(url, spool, group)
        delete_group(store)
        store.close()
    elif name == "postgres":
        from tests.pgutil import drop_group, open_postgres_store

        pg = open_postgres_store(url, spool, group)
        drop_group(pg)
        pg.close()
