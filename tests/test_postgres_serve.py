"""Real `idhooks serve` processes sharing one PostgreSQL: one deployment behind a load balancer. Events are
stored once, deliveries reach the target once, a killed process's jobs are delivered by the other after the
lease, and a PostgreSQL crash and restart mid-run loses nothing that was acknowledged."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from engine.store.postgres import PostgresStore
from tests.conftest import free_port, sample_event
from tests.peers import HttpPeer, http_peer  # noqa: F401 - fixture
from tests.pgutil import PrivateCluster, drop_group, open_postgres_store, postgres_config, unique_group
from tests.test_redis_serve import RULE, delivered_keys, post, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def start_server(folder: Path, serve: Callable[..., Any], url: str, group: str, target: str,
                 delivery: str = "{}") -> Any:
    """One process of deployment `group` in its own working folder, with a rule that sends every failed login
    to `target`."""
    folder.mkdir()
    port = free_port()
    config = postgres_config(folder, url, group, port, extra=f"""
destinations:
  target: {{type: http, base_url: "{target}", timeout: 30}}
delivery: {delivery}
""")
    (folder / "rules" / "provision.yaml").write_text(RULE)
    return serve(config, port)


def job_statuses(store: PostgresStore) -> Counter:
    return Counter(job.status for job in store.list_jobs(limit=10_000))


@pytest.fixture
def deployment(postgres_available: str, tmp_path: Path) -> Iterator[tuple[str, PostgresStore]]:
    """(group, a store of it for checking); the schema is dropped afterwards."""
    group = unique_group()
    store = open_postgres_store(postgres_available, tmp_path / "check", group)
    yield group, store
    drop_group(store)
    store.close()


def test_two_processes_store_and_deliver_every_event_once(tmp_path: Path, serve: Callable[..., Any],
                                                          postgres_available: str, http_peer: HttpPeer,
                                                          deployment: tuple[str, PostgresStore]) -> None:
    group, store = deployment
    servers = [start_server(tmp_path / n, serve, postgres_available, group, http_peer.url) for n in ("a", "b")]
    events = [sample_event() for _ in range(1000)]
    sends = [(servers[i % 2].url, e) for i, e in enumerate(events)]
    sends += [(servers[(i + 1) % 2].url, e) for i, e in enumerate(events) if i % 10 == 0]  # resent elsewhere
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda send: post(*send), sends))
    assert {code for code, _ in results} == {202}
    outcomes = [outcome for _, outcome in results]
    assert (outcomes.count("accepted"), outcomes.count("duplicate")) == (1000, 100)
    assert wait_until(lambda: job_statuses(store), Counter(done=1000), 120) == {"done": 1000}
    assert store.stats().events == {"processed": 1000}
    assert sorted(e.jti for e in store.list_events(limit=2000)) == sorted(e["jti"] for e in events)
    assert delivered_keys(http_peer) == Counter({f"{e['jti']}:provision:0": 1 for e in events})


def test_kill_9_while_holding_jobs_the_other_process_delivers_them_after_the_lease(
        tmp_path: Path, serve: Callable[..., Any], postgres_available: str, http_peer: HttpPeer,
        deployment: tuple[str, PostgresStore]) -> None:
    group, store = deployment
    delivery = "{workers: 4, per_destination_concurrency: 2, lease: 5s}"
    first = start_server(tmp_path / "a", serve, postgres_available, group, http_peer.url, delivery)
    http_peer.hold.clear()  # the target is slow: the first process holds its claimed jobs
    events = [sample_event() for _ in range(20)]
    for event in events:
        assert post(first.url, event)[0] == 202
    assert wait_until(lambda: job_statuses(store), Counter(pending=20), 30) == {"pending": 20}
    assert http_peer.wait_for_arrivals(2) == 2  # two sends in flight
    first.kill9()
    http_peer.hold.set()
    killed_at = time.monotonic()
    survivor = start_server(tmp_path / "b", serve, postgres_available, group, http_peer.url, delivery)
    assert wait_until(lambda: job_statuses(store), Counter(done=20), 60) == {"done": 20}, survivor.log()
    assert time.monotonic() - killed_at >= 4  # the dead process's leases held until they ended
    sent = delivered_keys(http_peer)
    assert set(sent) == {f"{e['jti']}:provision:0" for e in events}
    assert sum(sent.values()) == 20 + 2  # only the two in flight at the kill went out twice (same key)


def test_postgresql_crashing_and_restarting_mid_run_loses_nothing_acknowledged(
        tmp_path: Path, serve: Callable[..., Any], http_peer: HttpPeer) -> None:
    """A private cluster (not the machine's shared server) is crashed (`pg_ctl stop -m immediate`) while two
    processes take events; they spool, /readyz says degraded, and everything reaches PostgreSQL once it is
    back, stored once and delivered."""
    cluster = PrivateCluster(free_port())
    cluster.start()
    try:
        servers = [start_server(tmp_path / n, serve, cluster.url, "outage", http_peer.url) for n in ("a", "b")]
        sent: list[str] = []
        statuses: list[int] = []

        def send_one(i: int) -> None:
            event = sample_event()
            statuses.append(post(servers[i % 2].url, event)[0])
            sent.append(event["jti"])

        for i in range(30):
            send_one(i)
        cluster.stop("immediate")
        outage_ends, i = time.monotonic() + 15, 30
        while time.monotonic() < outage_ends:  # the hub keeps sending during the outage
            send_one(i)
            i += 1
            time.sleep(0.05)
        ready = requests.get(servers[0].url + "/readyz", timeout=10).json()
        assert (ready["status"], ready["store"].split(":")[0]) == ("degraded", "degraded")
        cluster.start()
        for j in range(30):
            send_one(i + j)
        assert set(statuses) == {202}
        store = PostgresStore(cluster.url, group="outage", spool_dir=tmp_path / "check")
        try:  # no restart of idhooks: the processes recover by themselves
            expected = Counter(done=len(sent))
            assert wait_until(lambda: job_statuses(store), expected, 120) == expected
            assert sorted(e.jti for e in store.list_events(limit=10_000)) == sorted(sent)
        finally:
            store.close()
        assert wait_until(lambda: requests.get(servers[1].url + "/readyz", timeout=10).json()["status"],
                          "ready", 30) == "ready"
        sent_keys = delivered_keys(http_peer)
        assert set(sent_keys) == {f"{jti}:provision:0" for jti in sent}
        # A send in flight when PostgreSQL went down could not be recorded: it goes out again after the lease,
        # with the same Idempotency-Key. At most the sends in flight then (2 per process) are repeated.
        assert max(sent_keys.values()) <= 2 and sum(sent_keys.values()) - len(sent_keys) <= 4
    finally:
        cluster.destroy()
