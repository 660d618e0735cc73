"""The `state_store` fixture: every stateful test runs against SQLite and, when a server answers, Redis."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from engine.match.stateful.decide import Observation
from engine.store.redis import RedisStore
from engine.store.sqlite import SQLiteStore

T0 = 1_700_000_000.0
"""An arbitrary epoch second; every test passes its own times (no wall clock)."""


@pytest.fixture(params=["sqlite", "redis"])
def state_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "state.db")
        yield store
        store.close()
        return
    url = request.getfixturevalue("redis_available")
    store = RedisStore(url, group=f"test-stateful-{uuid.uuid4().hex[:12]}", spool_dir=tmp_path / "spool")
    yield store
    keys = list(store.redis.scan_iter(match=f"{store.prefix}*", count=1000))
    if keys:
        store.redis.delete(*keys)
    store.close()


def seen(time: float, *, group: tuple = ("alice",), distinct: Any = None, jti: str | None = None) -> Observation:
    """A matching event at event time T0 + `time` seconds."""
    jti = jti or uuid.uuid4().hex
    return Observation(jti=jti, time=T0 + time, group=group, suppress_group=group, distinct=distinct,
                       item={"jti": jti, "at": time})
