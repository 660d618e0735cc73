"""Helpers for tests against the real Redis: a unique group per test, and removing only that group's keys."""

from __future__ import annotations

import uuid
from pathlib import Path

from engine.store.redis import RedisStore


def unique_group() -> str:
    return f"idhooks-test-{uuid.uuid4().hex[:12]}"


def open_redis_store(url: str, spool_dir: Path, group: str | None = None) -> RedisStore:
    return RedisStore(url, group=group or unique_group(), spool_dir=spool_dir)


def delete_group(store: RedisStore) -> None:
    """Delete every key under the store's prefix (and nothing else on the shared test database)."""
    keys = list(store.redis.scan_iter(match=store.prefix + "*", count=1000))
    if keys:
        store.redis.delete(*keys)
