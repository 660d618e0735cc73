"""Real `idhooks serve` processes sharing one Redis: one deployment behind a load balancer. Events are
stored once, deliveries reach the target once, a killed process's jobs are delivered by the other after
the lease, and a Redis outage loses nothing."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from engine.store.base import IncomingEvent
from engine.store.redis import RedisStore
from tests.conftest import free_port, sample_event, signed
from tests.peers import HttpPeer, http_peer  # noqa: F401 - fixture
from tests.redisutil import PrivateRedis, delete_group, open_redis_store, redis_config, unique_group

pytestmark = [pytest.mark.slow, pytest.mark.redis]

RULE = """rules:
  - id: provision
    event: login.loginFailed
    actions:
      - http: {to: target, method: POST, path: /users, json: {user: "{{ username }}"}}
"""


def post(base_url: str, event: dict[str, Any]) -> tuple[int, str]:
    body, headers = signed(event)
    resp = requests.post(base_url + "/webhooks/asgardeo", data=body, headers=headers, timeout=30)
    return resp.status_code, resp.json().get("status", "")


def wait_until(check: Callable[[], Any], expected: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while (found := check()) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def start_server(folder: Path, serve: Callable[..., Any], url: str, group: str, target: str,
                 delivery: str = "{}", store_extra: dict[str, str] | None = None) -> Any:
    """One process of deployment `group` in its own working folder, with a rule that sends every failed
    login to `target`; `store_extra` adds store settings (the TLS files)."""
    folder.mkdir()
    port = free_port()
    config = redis_config(folder, url, group, port, store_extra=store_extra, extra=f"""
destinations:
  target: {{type: http, base_url: "{target}", timeout: 30}}
delivery: {delivery}
""")
    (folder / "rules" / "provision.yaml").write_text(RULE)
    return serve(config, port)


def job_statuses(store: RedisStore) -> Counter:
    return Counter(job.status for job in store.list_jobs(limit=10_000))


def delivered_keys(peer: HttpPeer) -> Counter:
    return Counter(r.headers["Idempotency-Key"] for r in peer.requests)


def test_two_processes_store_and_deliver_every_event_once(tmp_path: Path, serve: Callable[..., Any],
                                                          redis_available: str, http_peer: HttpPeer) -> None:
    group = unique_group()
    servers = [start_server(tmp_path / n, serve, redis_available, group, http_peer.url) for n in ("a", "b")]
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
        assert wait_until(lambda: job_statuses(store), Counter(done=1000), 90) == {"done": 1000}
        assert store.stats().events == {"processed": 1000}
        assert sorted(e.jti for e in store.list_events(limit=2000)) == sorted(e["jti"] for e in events)
    finally:
        delete_group(store)
        store.close()
    assert delivered_keys(http_peer) == Counter({f"{e['jti']}:provision:0": 1 for e in events})


def test_kill_9_while_holding_jobs_the_other_process_delivers_them_after_the_lease(
        tmp_path: Path, serve: Callable[..., Any], redis_available: str, http_peer: HttpPeer) -> None:
    group = unique_group()
    delivery = "{workers: 4, per_destination_concurrency: 2, lease: 5s}"
    first = start_server(tmp_path / "a", serve, redis_available, group, http_peer.url, delivery)
    store = open_redis_store(redis_available, tmp_path / "check", group)
    try:
        http_peer.hold.clear()  # the target is slow: the first process holds its claimed jobs
        events = [sample_event() for _ in range(20)]
        for event in events:
            assert post(first.url, event)[0] == 202
        assert wait_until(lambda: job_statuses(store), Counter(pending=20), 30) == {"pending": 20}
        assert http_peer.wait_for_arrivals(2) == 2  # two sends in flight
        first.kill9()
        http_peer.hold.set()
        killed_at = time.monotonic()
        second = start_server(tmp_path / "b", serve, redis_available, group, http_peer.url, delivery)
        assert wait_until(lambda: job_statuses(store), Counter(done=20), 60) == {"done": 20}, second.log()
        assert time.monotonic() - killed_at >= 4  # some were leased to the dead process until the lease ended
    finally:
        delete_group(store)
        store.close()
    sent = delivered_keys(http_peer)
    assert set(sent) == {f"{e['jti']}:provision:0" for e in events}
    assert sum(sent.values()) == 20 + 2  # only the two in flight at the kill went out twice (same key)


def test_events_held_by_a_dead_process_are_taken_over_after_the_lease(
        tmp_path: Path, serve: Callable[..., Any], redis_available: str, http_peer: HttpPeer) -> None:
    group = unique_group()
    dead = open_redis_store(redis_available, tmp_path / "dead", group)  # a process that claims, then dies
    try:
        events = [sample_event() for _ in range(20)]
        for event in events:
            body, _ = signed(event)
            dead.ingest(IncomingEvent(jti=event["jti"], webhook="asgardeo", iat_ms=event["iat"],
                                      received_at=time.time(), uris=tuple(event["events"]), body=body), 3600)
        lease_ends = time.time() + 10
        assert len(dead.claim_events("dead-process", 10.0, 100, lease_ends - 10)) == 20
        start_server(tmp_path / "live", serve, redis_available, group, http_peer.url)
        if time.time() < lease_ends - 1:  # the live process leaves leased events alone ...
            assert dead.stats().events == {"pending": 20}
        # ... and processes them once the lease has ended
        assert wait_until(lambda: dead.stats().events, {"processed": 20}, 40) == {"processed": 20}
        assert time.time() >= lease_ends
    finally:
        delete_group(dead)
        dead.close()


def test_redis_down_60s_every_event_acknowledged_then_processed(tmp_path: Path, serve: Callable[..., Any],
                                                                http_peer: HttpPeer) -> None:
    redis_server = PrivateRedis(tmp_path / "redis", free_port())
    redis_server.start()
    try:
        servers = [start_server(tmp_path / n, serve, redis_server.url, "outage", http_peer.url) for n in ("a", "b")]
        sent: list[str] = []
        statuses: list[int] = []

        def send_one(i: int) -> None:
            event = sample_event()
            statuses.append(post(servers[i % 2].url, event)[0])
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
        try:  # no restart: the processes recover by themselves
            expected = Counter(done=len(sent))
            assert wait_until(lambda: job_statuses(store), expected, 120) == expected
            assert sorted(e.jti for e in store.list_events(limit=10_000)) == sorted(sent)
        finally:
            store.close()
        sent_keys = delivered_keys(http_peer)
        assert set(sent_keys) == {f"{jti}:provision:0" for jti in sent}
        # A send in flight when Redis went down could not be recorded: it goes out again after the lease,
        # with the same Idempotency-Key. At most the sends in flight then (2 per process) are repeated.
        assert max(sent_keys.values()) <= 2 and sum(sent_keys.values()) - len(sent_keys) <= 4
    finally:
        redis_server.stop()
