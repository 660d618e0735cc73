"""The spool: while Redis is unreachable, intake still acknowledges genuine events (the hub marks an endpoint
stale after ~20 s of errors) and loses none; they reach Redis in order, de-duplicated, once it is back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from engine.errors import StoreError
from engine.store.base import ACCEPTED, IncomingEvent
from engine.store.redis import RedisStore
from engine.store.spool import Spool
from tests.conftest import ROOT, free_port
from tests.redisutil import PrivateRedis, delete_group, open_redis_store
from tests.test_store_contract import WINDOW, event


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis", free_port())
    server.start()
    yield server
    server.stop()


class Recorder:
    """A sink that stores what it is given, de-duplicated like the store, and can be made to fail."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.fail_after: int | None = None

    def __call__(self, incoming: IncomingEvent, window: float) -> str:
        if self.fail_after is not None and len(self.stored) >= self.fail_after:
            raise StoreError("store down")
        if incoming.jti not in self.stored:
            self.stored.append(incoming.jti)
        return ACCEPTED


def test_spool_replays_in_order_and_survives_a_failed_drain(tmp_path: Path) -> None:
    sink = Recorder()
    spool = Spool(tmp_path / "spool", sink, name="t")
    spool.close()  # no drain thread: this test drains by hand
    for i in range(5):
        spool.append(event(f"e{i}"), WINDOW)
    sink.fail_after = 2
    with pytest.raises(StoreError):
        spool.drain()
    assert sink.stored == ["e0", "e1"]
    spool.append(event("e5"), WINDOW)
    sink.fail_after = None
    assert spool.drain() == 6  # the failed file again (e0, e1 are duplicates now), then the newer one
    assert sink.stored == [f"e{i}" for i in range(6)]
    assert list((tmp_path / "spool").glob("t.*")) == [tmp_path / "spool" / "t.lock"]


def test_spool_skips_a_torn_last_line_and_keeps_the_body_exact(tmp_path: Path) -> None:
    got: list[IncomingEvent] = []
    spool = Spool(tmp_path, lambda incoming, window: got.append(incoming), name="t")
    spool.close()
    original = event("whole")
    spool.append(original, WINDOW)
    with open(tmp_path / "t.spool", "ab") as handle:
        handle.write(b'{"jti": "torn", "webh')  # the process died mid-append: never acknowledged
    assert spool.drain() == 1
    assert got == [original]


def test_spool_found_at_start_is_drained_by_the_next_process(tmp_path: Path) -> None:
    first = Spool(tmp_path, lambda *a: None, name="t")
    first.close()
    first.append(event("left-behind"), WINDOW)
    got: list[str] = []
    second = Spool(tmp_path, lambda incoming, window: got.append(incoming.jti), name="t", retry_interval=0.01)
    try:
        wait_for(lambda: not second.active, "the drain thread to empty the spool")
    finally:
        second.close()
    assert got == ["left-behind"]


def test_outage_spools_then_drains_into_redis(private_redis: PrivateRedis, tmp_path: Path) -> None:
    store = RedisStore(private_redis.url, group="outage", spool_dir=tmp_path / "spool")
    try:
        assert store.ingest(event("before", at=1000.0), WINDOW) == ACCEPTED
        private_redis.stop()
        results = [store.ingest(event(f"during{i}", at=1001.0 + i), WINDOW) for i in range(5)]
        results.append(store.ingest(event("during2", at=1010.0), WINDOW))  # a resend while down
        assert results == [ACCEPTED] * 6
        assert store.spool.active
        store.check_writable()  # still ready: the spool keeps events
        private_redis.start()
        wait_for(lambda: not store.spool.active, "the spool to drain into Redis")
        assert store.ingest(event("after", at=1020.0), WINDOW) == ACCEPTED
        claimed = store.claim_events("w", 30, 100, 2000.0)
        assert [e.jti for e in claimed] == ["before", "during0", "during1", "during2", "during3", "during4",
                                            "after"]
        assert store.get_event("during2").received_at == 1003.0  # the first copy, not the resend
    finally:
        store.close()


def test_503_only_when_neither_redis_nor_the_spool_can_be_written(private_redis: PrivateRedis,
                                                                  tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    store = RedisStore(private_redis.url, group="both-down", spool_dir=blocker / "spool")
    try:
        private_redis.stop()
        with pytest.raises(StoreError) as err:
            store.ingest(event("lost"), WINDOW)
        assert str(err.value).startswith("could not store event 'lost': Redis is unreachable and cannot write "
                                         f"the spool {blocker / 'spool' / 'both-down-events.spool'}: ")
        with pytest.raises(StoreError):
            store.check_writable()
    finally:
        store.close()


def test_password_never_appears_in_errors(tmp_path: Path) -> None:
    closed_port = free_port()
    with pytest.raises(StoreError) as err:
        RedisStore(f"redis://:hunter2-secret@127.0.0.1:{closed_port}/0", spool_dir=tmp_path)
    assert "hunter2-secret" not in str(err.value)
    assert str(err.value).startswith(f"Redis store redis://:***@127.0.0.1:{closed_port}/0: reading the schema")


def test_password_protected_redis(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path / "redis", free_port(), password="s3cret-pw")
    server.start()
    try:
        store = RedisStore(server.url, group="auth", spool_dir=tmp_path / "spool")
        try:
            assert store.ingest(event("e"), WINDOW) == ACCEPTED
            assert store.url == f"redis://:***@127.0.0.1:{server.port}/0"
        finally:
            store.close()
        with pytest.raises(StoreError) as err:
            RedisStore(server.url.replace("s3cret-pw", "wrong-pw"), spool_dir=tmp_path / "spool")
        assert "wrong-pw" not in str(err.value) and "s3cret-pw" not in str(err.value)
        assert str(err.value).startswith(f"Redis store redis://:***@127.0.0.1:{server.port}/0: reading the "
                                         "schema version: ")
    finally:
        server.stop()


def test_missing_redis_package_says_how_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['redis'] = None\n"  # what an install without the extra looks like
            "from engine.store.redis import RedisStore\n"
            "try:\n    RedisStore('redis://127.0.0.1:6379/15')\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.stdout.strip() == ("ConfigError store.url: the Redis store needs the redis package: "
                                  "pip install 'idhooks[redis]'")


def test_replaying_a_drained_file_stores_nothing_twice(redis_available: str, tmp_path: Path) -> None:
    """A crash after replaying a file but before deleting it (or two processes sharing one spool folder)
    replays it again: Redis de-duplication keeps one event."""
    store = open_redis_store(redis_available, tmp_path)
    try:
        store.spool.close()
        store.spool.append(event("twice"), WINDOW)
        spooled = tmp_path / f"{store.group}-events.spool"
        copy = spooled.read_bytes()
        assert store.spool.drain() == 1
        spooled.write_bytes(copy)
        assert store.spool.drain() == 1
        assert [(e.jti, e.status) for e in store.list_events()] == [("twice", "pending")]
    finally:
        delete_group(store)
        store.close()
