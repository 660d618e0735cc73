"""The store backends every store test runs against, from one list.

Adding a backend: one entry in BACKENDS (an opener that yields a fresh, empty store of a new deployment and
cleans up afterwards) and, when it needs a server, a pytest mark; for suites that write a config.yaml, one
branch in `store_url`, `backend_config` and `drop_deployment` below. The store contract suite
(tests/test_store_contract.py), the stateful-state suites (tests/stateful_fixtures.py), the worker, quarantine
and CLI suites then run against it.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import pytest

from engine.store.base import Store

Opener = Callable[[pytest.FixtureRequest, Path], ContextManager[Store]]


@contextmanager
def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    from engine.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "store.db")
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    from tests.redisutil import delete_group, open_redis_store

    store = open_redis_store(request.getfixturevalue("redis_available"), tmp_path / "redis-spool")
    try:
        yield store
    finally:
        delete_group(store)
        store.close()


@contextmanager
def _rediss(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Redis over TLS with a client certificate (a private redis-server of this test session)."""
    from tests.redisutil import delete_group, open_redis_store, tls_files

    server = request.getfixturevalue("tls_redis")
    store = open_redis_store(server.url, tmp_path / "redis-spool", **tls_files(server))
    try:
        yield store
    finally:
        delete_group(store)
        store.close()


@contextmanager
def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A deployment of its own (a schema) in this test session's database on the machine's PostgreSQL."""
    from tests.pgutil import drop_group, open_postgres_store

    store = open_postgres_store(request.getfixturevalue("postgres_available"), tmp_path / "postgres-spool")
    try:
        yield store
    finally:
        drop_group(store)
        store.close()


BACKENDS: dict[str, tuple[Opener, tuple[pytest.MarkDecorator, ...]]] = {
    "sqlite": (_sqlite, ()),
    "redis": (_redis, (pytest.mark.redis,)),
    "postgres": (_postgres, (pytest.mark.postgres,)),
}
"""Every store backend: name -> (opener, marks)."""

VARIANTS: dict[str, tuple[Opener, tuple[pytest.MarkDecorator, ...]]] = {
    "rediss": (_rediss, (pytest.mark.redis,)),
}
"""Transport variants of a backend, run by the contract suite only."""


def backend_params(*, variants: bool = False) -> list:
    """pytest params for every backend (and variant), with their marks."""
    chosen = {**BACKENDS, **(VARIANTS if variants else {})}
    return [pytest.param(name, marks=marks) for name, (_, marks) in chosen.items()]


@contextmanager
def open_backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opener, _ = {**BACKENDS, **VARIANTS}[name]
    with opener(request, tmp_path) as store:
        yield store


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


def config_for(store: Store, path: Path) -> Path:
    """Write a config.yaml at `path` that opens `store` (for running commands against it)."""
    from engine.store.postgres import PostgresStore
    from engine.store.redis import RedisStore
    from engine.store.sqlite import SQLiteStore
    from tests.conftest import redis_url

    if isinstance(store, SQLiteStore):
        path.write_text(f'store: {{url: "sqlite:///{store.path}"}}\n')
    else:
        url = redis_url() if isinstance(store, RedisStore) else store._raw_url  # type: ignore[attr-defined]
        assert isinstance(store, (RedisStore, PostgresStore))
        path.write_text(f'store: {{url: "{url}", group: "{store.group}", spool_dir: spool}}\n')
    return path
