"""Ordered delivery across processes on Redis: three worker processes (four threads each) share one
deployment's queue; a slow loopback target records, per `ordered_by` key, the order of arrival and how many
calls were in flight at once. Every key must arrive in event order, one call at a time, through injected
failures (a failing call holds its key back until it succeeds), while different keys go in parallel."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterator

import pytest

from engine.store.base import NewJob
from tests.conftest import ROOT
from tests.peers import HttpPeer, Request, Response
from tests.redisutil import delete_group, open_redis_store

pytestmark = [pytest.mark.slow, pytest.mark.redis]

USERS, EVENTS, PROCESSES = 6, 8, 3


class OrderPeer(HttpPeer):
    """Holds each call 30 ms; answers 503 to the first attempt of every third event of user u0."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = defaultdict(int)
        self.most_at_once: dict[str, int] = defaultdict(int)
        self.seen: dict[str, list[int]] = defaultdict(list)
        self.delivered: dict[str, list[int]] = defaultdict(list)
        self.refused: set[tuple[str, int]] = set()
        self.log: list[tuple[str, int, str]] = []  # (user, seq, 'refused' | 'delivered') in answer order

    def answer(self, request: Request) -> Response:
        body = request.json()
        user, seq = body["user"], body["seq"]
        with self.lock:
            self.in_flight[user] += 1
            self.most_at_once[user] = max(self.most_at_once[user], self.in_flight[user])
            self.seen[user].append(seq)
        time.sleep(0.03)
        with self.lock:
            self.in_flight[user] -= 1
            if user == "u0" and seq % 3 == 0 and (user, seq) not in self.refused:
                self.refused.add((user, seq))
                self.log.append((user, seq, "refused"))
                return Response(503, b"try again", {"Retry-After": "0"})
            self.delivered[user].append(seq)
            self.log.append((user, seq, "delivered"))
        return Response(201, {"ok": True})


WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from actions import build_actions
    from actions.base import ActionContext
    from engine.config.settings import DeliveryConfig
    from engine.deliver.worker import DeliveryWorker
    from engine.metrics import Metrics
    from engine.runtime import Current
    from engine.store.redis import RedisStore

    url, group, target, stop = sys.argv[1:5]
    store = RedisStore(url, group=group, spool_dir=Path(stop).parent / ("spool-" + str(time.time())))
    actions = build_actions({"target": {"type": "http", "base_url": target}}, ActionContext())
    delivery = DeliveryConfig(workers=4, lease=30, retry_for=60, backoff_initial=0.02, backoff_max=0.05,
                              per_destination_concurrency=4, shutdown_grace=5)
    worker = DeliveryWorker(store, Current(actions), delivery, Metrics(), poll_interval=0.02)
    worker.start()
    deadline = time.monotonic() + 60
    while not Path(stop).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop(5)
    store.close()
""")


@pytest.fixture
def peer() -> Iterator[OrderPeer]:
    server = OrderPeer()
    yield server
    server.close()


def test_each_key_in_event_order_one_at_a_time_across_processes(redis_available: str, tmp_path: Path,
                                                                peer: OrderPeer) -> None:
    store = open_redis_store(redis_available, tmp_path / "spool")
    try:
        base = time.time()
        jobs = [NewJob(f"e{seq}-u{user}:r:0", "target", "http", {"path": "/provision", "json": {"user": f"u{user}", "seq": seq}},
                       rule="r", jti=f"e{seq}-u{user}", received_at=base + seq + user / 100, ordered_by=f"u{user}")
                for seq in range(EVENTS) for user in range(USERS)]
        store.enqueue_jobs(list(reversed(jobs)), base)  # queued in reverse: the store orders by event arrival
        stop = tmp_path / "stop"
        processes = [subprocess.Popen([sys.executable, "-c", WORKER, redis_available, store.group,
                                       peer.url, str(stop)], cwd=ROOT) for _ in range(PROCESSES)]
        try:
            deadline = time.monotonic() + 60
            while sum(len(v) for v in peer.delivered.values()) < USERS * EVENTS:
                assert time.monotonic() < deadline, dict(peer.delivered)
                time.sleep(0.05)
        finally:
            stop.touch()
            for process in processes:
                assert process.wait(30) == 0
        assert all(peer.delivered[f"u{user}"] == list(range(EVENTS)) for user in range(USERS)), dict(peer.delivered)
        assert dict(peer.most_at_once) == {f"u{user}": 1 for user in range(USERS)}
        refused, redone = peer.log.index(("u0", 3, "refused")), peer.log.index(("u0", 3, "delivered"))
        assert any(user != "u0" for user, _, _ in peer.log[refused:redone])  # other keys went on meanwhile
        retried = [seq for seq in peer.seen["u0"] if seq % 3 == 0]
        assert retried == sorted(retried) and len(retried) == 2 * len({s for s in range(EVENTS) if s % 3 == 0})
        assert {job.status for job in store.list_jobs(limit=1000)} == {"done"}
    finally:
        delete_group(store)
        store.close()
