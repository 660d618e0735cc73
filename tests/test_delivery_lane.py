"""The delivery lane (engine/deliver/lane.py): the HTTP actions' jobs are sent from one event-loop thread, up to
`per_destination_concurrency` at once for every destination, while the delivery threads send the other actions'
jobs. With each real store and real loopback targets."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from actions import build_actions
from actions.base import ActionContext
from engine.config.settings import DeliveryConfig
from engine.deliver.worker import DeliveryWorker
from engine.metrics import Metrics
from engine.runtime import Current
from engine.secrets import Secret
from engine.store.base import NewJob, Store
from tests.peers import HttpPeer
from tests.store_backends import backend_params, open_backend
from tests.test_worker import wait_until

DELIVERY = DeliveryConfig(workers=1, lease=30, retry_for=600, backoff_initial=0.05, backoff_max=0.1,
                          per_destination_concurrency=2, shutdown_grace=5)


@pytest.fixture(params=backend_params())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_backend(request.param, request, tmp_path) as opened:
        yield opened


@pytest.fixture
def peers() -> Iterator[dict[str, HttpPeer]]:
    opened = {name: HttpPeer() for name in ("a", "b", "c")}
    yield opened
    for peer in opened.values():
        peer.hold.set()
        peer.close()


def queue(store: Store, destination: str, count: int, action: str = "http") -> None:
    message = {"path": "/users", "json": {"to": destination}} if action == "http" else {"message": "hello"}
    store.enqueue_jobs([NewJob(key=f"jti-{destination}-{n}:provision:0", destination=destination, action=action,
                               message=message, rule="provision", jti=f"jti-{destination}-{n}",
                               received_at=time.time()) for n in range(count)], time.time())


def started(store: Store, peers: dict[str, HttpPeer], delivery: DeliveryConfig = DELIVERY) -> DeliveryWorker:
    actions = build_actions({name: {"type": "http", "base_url": peer.url} for name, peer in peers.items()},
                            ActionContext())
    worker = DeliveryWorker(store, Current(actions), delivery, Metrics(), poll_interval=0.05)
    worker.start()
    return worker


def in_flight(peers: dict[str, HttpPeer]) -> int:
    return sum(peer.pending_answers for peer in peers.values())


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "threads"])
def test_slow_targets_get_every_slot_without_a_thread_each(store: Store, peers: dict[str, HttpPeer],
                                                           lane: bool) -> None:
    """Three targets that do not answer yet, two slots each, one delivery thread: the lane has all six sends in
    flight at once; the threads alone have one (a thread per send in flight)."""
    for peer in peers.values():
        peer.hold.clear()
        queue(store, next(name for name, p in peers.items() if p is peer), 2)
    worker = started(store, peers, replace(DELIVERY, lane=lane))
    try:
        expected = 6 if lane else 1
        assert wait_until(lambda: in_flight(peers) == expected)
        time.sleep(0.3)
        assert in_flight(peers) == expected  # and no more
        for peer in peers.values():
            peer.hold.set()
        assert wait_until(lambda: store.stats().jobs.get("done", 0) == 6)
        assert sorted(peer.arrivals for peer in peers.values()) == [2, 2, 2]  # each job sent once
    finally:
        assert worker.stop()


def test_a_slow_http_target_holds_no_thread_from_other_actions(store: Store, peers: dict[str, HttpPeer]) -> None:
    """While the lane waits on a target that does not answer, the one delivery thread still sends a `log` job."""
    peers["a"].hold.clear()
    queue(store, "a", 2)
    worker = started(store, {"a": peers["a"]})
    try:
        assert wait_until(lambda: peers["a"].pending_answers == 2)
        queue(store, "", 1, action="log")
        worker.notify()
        assert wait_until(lambda: store.stats().jobs.get("done", 0) == 1)
        assert peers["a"].pending_answers == 2 and [job.action for job in store.list_jobs("done")] == ["log"]
    finally:
        peers["a"].hold.set()
        assert wait_until(lambda: store.stats().jobs.get("done", 0) == 3)
        assert worker.stop()


def test_failures_on_the_lane_are_retried_and_dead_lettered_as_from_a_thread(store: Store,
                                                                          peers: dict[str, HttpPeer]) -> None:
    peers["a"].fail_first(1, status=503)
    peers["b"].fail_first(100, status=400)
    queue(store, "a", 1)
    queue(store, "b", 1)
    worker = started(store, {"a": peers["a"], "b": peers["b"]})
    try:
        assert wait_until(lambda: len(store.list_jobs("done")) == 1 and len(store.list_jobs("dead")) == 1)
    finally:
        assert worker.stop()
    [done] = store.list_jobs("done")
    [dead] = store.list_jobs("dead")
    assert (done.destination, done.attempts) == ("a", 2)
    assert (dead.destination, dead.attempts) == ("b", 1) and dead.last_error == f"{peers['b'].url}/users answered 400: ok"
    assert worker.metrics.action_attempts.labels("a")._value.get() == 2


def test_turning_the_lane_off_hands_its_destinations_to_the_threads(store: Store,
                                                                    peers: dict[str, HttpPeer]) -> None:
    worker = started(store, {"a": peers["a"]})
    try:
        queue(store, "a", 1)
        assert wait_until(lambda: peers["a"].arrivals == 1)
        assert any(thread.name == "delivery-lane" for thread in threading.enumerate())
        worker.apply(replace(DELIVERY, lane=False))
        assert wait_until(lambda: not any(thread.name == "delivery-lane" for thread in threading.enumerate()))
        store.enqueue_jobs([NewJob(key="jti-later:provision:0", destination="a", action="http",
                                   message={"path": "/later"}, rule="provision", jti="jti-later")], time.time())
        worker.notify()
        assert [r.path for r in peers["a"].wait_for(2)] == ["/users", "/later"]
        worker.apply(DELIVERY)  # and on again
        assert wait_until(lambda: any(thread.name == "delivery-lane" for thread in threading.enumerate()))
    finally:
        assert worker.stop()
    assert not any(thread.name == "delivery-lane" for thread in threading.enumerate())
    assert store.stats().jobs == {"done": 2}


def test_a_slow_targets_backlog_is_spread_over_its_slots(store: Store, peers: dict[str, HttpPeer]) -> None:
    """Jobs that waited (a backlog) are claimed together; the lane sends them two at a time (both slots), not one
    after the other in one batch."""
    peers["a"].hold.clear()
    store.enqueue_jobs([NewJob(key=f"jti-{n}:provision:0", destination="a", action="http", message={"path": f"/{n}"},
                               rule="provision", jti=f"jti-{n}") for n in range(4)], time.time() - 1)
    worker = started(store, {"a": peers["a"]})
    try:
        assert wait_until(lambda: peers["a"].pending_answers == 2)
        time.sleep(0.3)
        assert peers["a"].pending_answers == 2 and peers["a"].arrivals == 2
        peers["a"].hold.set()
        assert sorted(r.path for r in peers["a"].wait_for(4)) == ["/0", "/1", "/2", "/3"]
        assert wait_until(lambda: store.stats().jobs == {"done": 4})
    finally:
        assert worker.stop()


def test_every_http_action_is_sent_on_the_lane_and_the_others_by_threads() -> None:
    hook = Secret("http://127.0.0.1:9/hook")
    actions = build_actions({
        "h": {"type": "http", "base_url": "http://127.0.0.1:9"}, "s": {"type": "slack", "webhook_url": hook},
        "t": {"type": "teams", "webhook_url": hook}, "p": {"type": "pagerduty", "routing_key": Secret("k" * 32)},
        "o": {"type": "opsgenie", "api_key": Secret("k")},
        "sp": {"type": "splunk_hec", "url": "http://127.0.0.1:9", "token": Secret("t")},
        "e": {"type": "email", "host": "127.0.0.1", "from": "idhooks@example.com"},
        "sy": {"type": "syslog", "host": "127.0.0.1", "port": 514},
        "n": {"type": "nats", "servers": "nats://127.0.0.1:4222", "subject": "x"}}, ActionContext())
    assert actions.on_loop == {"h", "s", "t", "p", "o", "sp"}
