"""The store backends every store test runs against, from one list.

Adding a backend: one entry in BACKENDS (an opener that yields a fresh, empty store of a new deployment and
cleans up afterwards) and, when it needs a server, a pytest mark. The store contract suite
(tests/test_store_contract.py) and the stateful-state suites (tests/stateful_fixtures.py) then run against it.
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


BACKENDS: dict[str, tuple[Opener, tuple[pytest.MarkDecorator, ...]]] = {
    "sqlite": (_sqlite, ()),
    "redis": (_redis, (pytest.mark.redis,)),
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
