"""A replicated Redis behind Sentinel (`redis+sentinel://`): idhooks asks Sentinel for the current primary,
so when the primary dies and Sentinel promotes its replica, every process moves over by itself and the
events acknowledged meanwhile are spooled, then stored and delivered once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest

from engine.errors import ConfigError
from engine.store.redis_connect import parse_sentinel_url
from tests.conftest import free_port, sample_event
from tests.peers import HttpPeer, http_peer  # noqa: F401 - fixture
from tests.redisutil import PrivateRedis, PrivateSentinel, delete_group, open_redis_store, unique_group
from tests.test_redis_serve import delivered_keys, post, start_server, wait_until


@pytest.mark.parametrize(("url", "parsed"), [
    ("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/mymaster/2",
     ([("10.0.0.1", 26379), ("10.0.0.2", 26380)], "mymaster", 2, None, None)),
    ("redis+sentinel://:p%40ss@sentinel.internal/mymaster", ([("sentinel.internal", 26379)], "mymaster", 0, None,
                                                            "p@ss")),
    ("rediss+sentinel://app:pw@[::1]:26379/m", ([("::1", 26379)], "m", 0, "app", "pw")),
])
def test_sentinel_urls(url: str, parsed: tuple) -> None:
    assert parse_sentinel_url(url) == parsed


@pytest.mark.parametrize(("url", "problem"), [
    ("redis+sentinel://:pw@h1:26379", "store.url: redis+sentinel://:***@h1:26379: expected the master name and "
                                      "optionally a db number after the sentinels: "),
    ("redis+sentinel:///mymaster", "store.url: redis+sentinel:///mymaster: no sentinel address: expected "),
    ("redis+sentinel://h1:port/m", "store.url: redis+sentinel://h1:port/m: bad sentinel address 'h1:port': "),
    ("redis+sentinel://h1/m/zero", "store.url: redis+sentinel://h1/m/zero: expected the master name"),
])
def test_a_bad_sentinel_url_says_what_is_wrong_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_sentinel_url(url)
    assert str(err.value).startswith(problem)
    assert "redis+sentinel://[:PASSWORD@]HOST:26379[,HOST:26379...]/MASTER_NAME[/DB]" in str(err.value)


@pytest.mark.slow
@pytest.mark.redis
def test_a_failover_moves_the_deployment_to_the_new_primary(tmp_path: Path, serve: Callable[..., Any],
                                                            http_peer: HttpPeer) -> None:
    primary = PrivateRedis(tmp_path / "primary", free_port())
    primary.start()
    replica = PrivateRedis(tmp_path / "replica", free_port(), replica_of=primary.port)
    replica.start()
    sentinel = PrivateSentinel(tmp_path / "sentinel", free_port(), primary.port)
    sentinel.start()
    try:
        assert wait_until(sentinel.replicas, 1, 30) == 1  # Sentinel must know the replica to fail over to it
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{sentinel.master}/0"
        group = unique_group()
        server = start_server(tmp_path / "proc", serve, url, group, http_peer.url)
        before = [sample_event() for _ in range(20)]
        assert [post(server.url, e)[0] for e in before] == [202] * 20
        assert http_peer.wait_for_arrivals(20, timeout=30) >= 20
        primary.client().execute_command("WAIT", 1, 5000)  # what was acknowledged has reached the replica

        primary.stop()  # kill -9: Sentinel notices after 1 s and promotes the replica
        during = [sample_event() for _ in range(20)]
        for event in during:
            assert post(server.url, event)[0] == 202  # accepted all along (spooled while there is no primary)
            time.sleep(0.1)
        assert wait_until(sentinel.primary, replica.port, 30) == replica.port
        assert "spooling events to" in server.log()  # there was no primary for a while

        events = before + during
        expected = Counter({f"{e['jti']}:provision:0": 1 for e in events})
        assert wait_until(lambda: delivered_keys(http_peer), expected, 60) == expected, server.log()
        store = open_redis_store(url, tmp_path / "check", group)
        try:
            assert store.stats().events == {"processed": 40}
        finally:
            delete_group(store)
            store.close()
    finally:
        sentinel.stop()
        replica.stop()
        primary.stop()
