"""Processes configured with one Redis URL and group form one deployment: they share events,
de-duplication and the delivery queue; another group on the same Redis shares nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from engine.cli import main
from engine.store.base import ACCEPTED, DUPLICATE, IncomingEvent, NewJob, SubscriptionRecord
from engine.store.redis import RedisStore
from tests.conftest import ROOT, sample_event, signed
from tests.redisutil import delete_group, open_redis_store, redis_config, unique_group
from tests.test_store_contract import LEASE, T0, WINDOW, event

pytestmark = pytest.mark.redis


@pytest.fixture
def pair(redis_available: str, tmp_path: Path) -> Iterator[tuple[RedisStore, RedisStore]]:
    """Two stores of one deployment, as two processes in different working folders would open them."""
    group = unique_group()
    first = open_redis_store(redis_available, tmp_path / "a", group)
    second = open_redis_store(redis_available, tmp_path / "b", group)
    yield first, second
    delete_group(first)
    first.close()
    second.close()


def test_two_stores_share_events_dedup_and_leases(pair: tuple[RedisStore, RedisStore]) -> None:
    a, b = pair
    assert a.ingest(event("shared"), WINDOW) == ACCEPTED
    assert b.ingest(event("shared", at=T0 + 1), WINDOW) == DUPLICATE
    assert [e.jti for e in a.claim_events("proc-a", LEASE, 10, T0 + 2)] == ["shared"]
    assert b.claim_events("proc-b", LEASE, 10, T0 + 3) == []
    # proc-a died holding the event: proc-b takes it over once the lease ends
    assert [e.jti for e in b.claim_events("proc-b", LEASE, 10, T0 + 2 + LEASE)] == ["shared"]
    b.complete_event("shared", [{"rule": "r"}], [NewJob("shared:r:0", "slack", "slack", {})], T0 + 40)
    assert a.get_event("shared").status == "processed"
    assert [j.key for j in a.list_jobs("pending")] == ["shared:r:0"]


def test_jobs_go_to_one_process_each(pair: tuple[RedisStore, RedisStore]) -> None:
    a, b = pair
    a.ingest(event("e"), WINDOW)
    a.complete_event("e", [], [NewJob(f"e:r:{i}", "slack", "slack", {}) for i in range(30)], T0)
    claimed: dict[str, list[str]] = {"a": [], "b": []}

    def work(name: str, store: RedisStore) -> None:
        while batch := store.claim_jobs(name, LEASE, 2, T0 + 1):
            claimed[name].extend(j.id for j in batch)

    threads = [threading.Thread(target=work, args=args) for args in (("a", a), ("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = claimed["a"] + claimed["b"]
    assert len(everything) == len(set(everything)) == 30


def test_another_group_shares_nothing(pair: tuple[RedisStore, RedisStore], redis_available: str,
                                      tmp_path: Path) -> None:
    a, _ = pair
    a.ingest(event("mine"), WINDOW)
    other = open_redis_store(redis_available, tmp_path / "other")
    try:
        assert other.ingest(event("mine"), WINDOW) == ACCEPTED
        assert [e.jti for e in other.list_events()] == ["mine"]
        assert other.stats().events == {"pending": 1}
    finally:
        delete_group(other)
        other.close()


_RACE = """
import random, sys
from engine.store.redis import RedisStore
from tests.test_store_contract import event
store = RedisStore(sys.argv[1], group=sys.argv[2], spool_dir=sys.argv[3])
jtis = [f"jti-{i}" for i in range(300)]
random.shuffle(jtis)
print(sum(store.ingest(event(jti), 3600.0) == "accepted" for jti in jtis))
store.close()
"""


@pytest.mark.slow
def test_two_processes_racing_the_same_events_store_each_once(redis_available: str, tmp_path: Path) -> None:
    group = unique_group()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, redis_available, group, str(tmp_path / name)],
                              env=env, stdout=subprocess.PIPE, text=True) for name in ("p1", "p2")]
    accepted = [int(proc.communicate(timeout=60)[0]) for proc in procs]
    store = open_redis_store(redis_available, tmp_path / "check", group)
    try:
        assert sum(accepted) == 300
        assert store.stats().events == {"pending": 300}
    finally:
        delete_group(store)
        store.close()


def test_cli_commands_read_the_shared_store(pair: tuple[RedisStore, RedisStore], redis_available: str,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = pair
    a.record_subscription(SubscriptionRecord("asgardeo", "acme.login", "subscribe", T0, T0 + 86400))
    hub_event = sample_event()
    a.ingest(IncomingEvent(jti=hub_event["jti"], webhook="asgardeo", iat_ms=hub_event["iat"], received_at=T0,
                           uris=tuple(hub_event["events"]), body=signed(hub_event)[0]), WINDOW)
    config = redis_config(tmp_path, redis_available, a.group, port=8080)
    assert main(["subscriptions", "--config", str(config), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(s["webhook"], s["topic"], s["mode"]) for s in shown["subscriptions"]] == \
        [("asgardeo", "acme.login", "subscribe")]
    assert main(["events", "show", hub_event["jti"], "--config", str(config), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["jti"], shown["status"], shown["event"]) == (hub_event["jti"], "pending", hub_event)
