"""Real `idhooks serve` processes sharing one Redis: one deployment behind a load balancer."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from engine.store.base import IncomingEvent
from engine.store.redis import RedisStore
from tests.conftest import free_port, sample_event, signed
from tests.redisutil import PrivateRedis, delete_group, open_redis_store, redis_config, unique_group

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def post(base_url: str, event: dict[str, Any]) -> tuple[int, str]:
    body, headers = signed(event)
    resp = requests.post(base_url + "/webhooks/asgardeo", data=body, headers=headers, timeout=30)
    return resp.status_code, resp.json().get("status", "")


def wait_processed(store: RedisStore, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while store.stats().events != {"processed": count} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.stats().events == {"processed": count}


RULE = """rules:
  - id: every-failure
    event: login.loginFailed
    actions:
      - log: {message: "failed login"}
"""


def two_servers(tmp_path: Path, serve: Callable[..., Any], url: str, group: str) -> list[Any]:
    """Two processes of one deployment, in different working folders, each with a rule matching every
    failed login."""
    servers = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        port = free_port()
        config = redis_config(folder, url, group, port)
        (folder / "rules" / "logins.yaml").write_text(RULE)
        servers.append(serve(config, port))
    return servers


def test_two_processes_store_every_event_once(tmp_path: Path, serve: Callable[..., Any],
                                              redis_available: str) -> None:
    group = unique_group()
    servers = two_servers(tmp_path, serve, redis_available, group)
    events = [sample_event() for _ in range(1000)]
    sends = [(servers[i % 2].url, e) for i, e in enumerate(events)]
    sends += [(servers[(i + 1) % 2].url, e) for i, e in enumerate(events) if i % 10 == 0]  # resent elsewhere
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda send: post(*send), sends))
    assert {code for code, _ in results} == {202}
    outcomes = [outcome for _, outcome in results]
    assert (outcomes.count("accepted"), outcomes.count("duplicate")) == (1000, 100)
    store = open_redis_store(redis_available, tmp_path / "check", group)
    try:
        wait_processed(store, 1000, timeout=60)
        assert sorted(e.jti for e in store.list_events(limit=2000)) == sorted(e["jti"] for e in events)
        jobs = store.list_jobs(limit=2000)  # one delivery queued per event, whichever process evaluated it
        assert sorted(j.key for j in jobs) == sorted(f"{e['jti']}:every-failure:0" for e in events)
    finally:
        delete_group(store)
        store.close()


def test_redis_down_60s_every_event_acknowledged_then_processed(tmp_path: Path, serve: Callable[..., Any]) -> None:
    redis_server = PrivateRedis(tmp_path / "redis", free_port())
    redis_server.start()
    try:
        servers = two_servers(tmp_path, serve, redis_server.url, "outage")
        sent: list[str] = []
        statuses: list[int] = []

        def send_one(i: int) -> None:
            event = sample_event()
            code, _ = post(servers[i % 2].url, event)
            statuses.append(code)
            sent.append(event["jti"])

        for i in range(20):
            send_one(i)
        redis_server.stop()
        outage_ends = time.monotonic() + 60
        i = 20
        while time.monotonic() < outage_ends:  # the hub keeps sending during the outage
            send_one(i)
            i += 1
            time.sleep(0.1)
        redis_server.start()
        for j in range(20):
            send_one(i + j)
        assert set(statuses) == {202}
        store = RedisStore(redis_server.url, group="outage", spool_dir=tmp_path / "check")
        try:
            wait_processed(store, len(sent), timeout=60)  # no restart: the processes recover by themselves
            assert sorted(e.jti for e in store.list_events(limit=10_000)) == sorted(sent)
        finally:
            store.close()
    finally:
        redis_server.stop()


def test_events_held_by_a_dead_process_are_taken_over_after_the_lease(
        tmp_path: Path, serve: Callable[..., Any], redis_available: str) -> None:
    group = unique_group()
    folder = tmp_path / "live"
    folder.mkdir()
    port = free_port()
    config = redis_config(folder, redis_available, group, port)
    dead = open_redis_store(redis_available, tmp_path / "dead", group)  # a process that claims, then dies
    try:
        events = [sample_event() for _ in range(20)]
        for event in events:
            body, _ = signed(event)
            dead.ingest(IncomingEvent(jti=event["jti"], webhook="asgardeo", iat_ms=event["iat"],
                                      received_at=time.time(), uris=tuple(event["events"]), body=body), 3600)
        lease_ends = time.time() + 10
        assert len(dead.claim_events("dead-process", 10.0, 100, lease_ends - 10)) == 20
        serve(config, port)
        if time.time() < lease_ends - 1:  # the live process leaves leased events alone ...
            assert dead.stats().events == {"pending": 20}
        wait_processed(dead, 20, timeout=40)  # ... and processes them once the lease has ended
        assert time.time() >= lease_ends
        assert {e.decisions is not None for e in dead.list_events()} == {True}
    finally:
        delete_group(dead)
        dead.close()
