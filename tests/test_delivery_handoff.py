"""The processor stores a new job already leased to this process's running delivery worker and hands it over in
memory (engine/store/handoff.py JobHandoff, issue 14): a shortcut past the claim that may never lose a job,
send one twice, or send an ordered job before the one ahead of it."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Iterator

import pytest

from actions import build_actions
from actions.base import ActionContext
from engine.config.settings import DeliveryConfig
from engine.deliver.worker import DeliveryWorker
from engine.metrics import Metrics
from engine.runtime import Current
from engine.store.base import NewJob
from engine.store.handoff import JobHandoff
from engine.store.sqlite import SQLiteStore
from tests.peers import HttpPeer, http_peer  # noqa: F401 - fixture

DELIVERY = DeliveryConfig(workers=2, lease=30, retry_for=600, backoff_initial=5, backoff_max=60,
                          per_destination_concurrency=1, shutdown_grace=5)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    db = SQLiteStore(tmp_path / "idhooks.db")
    yield db
    db.close()


def job(n: int, destination: str = "target", **fields: str) -> NewJob:
    return NewJob(key=f"jti-{n}:provision:0", destination=destination, action="http",
                  message={"path": "/users", "json": {"n": n}}, rule="provision", jti=f"jti-{n}", received_at=1.0,
                  **fields)  # type: ignore[arg-type]


def leases(store: SQLiteStore) -> dict[str, tuple[str, float]]:
    """key -> (lease owner, lease end) of every stored job."""
    with store._tx() as conn:
        return {row[0]: (row[1], row[2]) for row in conn.execute("SELECT key, lease_owner, lease_until FROM jobs")}


def test_a_new_job_is_stored_leased_to_the_worker_and_handed_over(store: SQLiteStore) -> None:
    now = time.time()
    handoff = JobHandoff("worker-a", lease=30)
    assert store.hand_over_new_jobs(handoff)
    store.complete_event("jti-1", [], [job(1), job(2, ordered_by="alice"), job(3, destination="other")], now)
    # the ordered job waits for the ones ahead of its key: it is stored unleased, for a claim
    assert leases(store) == {"jti-1:provision:0": ("worker-a", now + 30), "jti-2:provision:0": ("", 0),
                             "jti-3:provision:0": ("worker-a", now + 30)}
    assert store.claim_jobs("worker-b", 30, 10, now) and leases(store)["jti-2:provision:0"][0] == "worker-b"
    assert store.claim_jobs("worker-b", 30, 10, now) == []  # nobody else claims a handed job while it is leased
    [first] = handoff.take(frozenset({"other"}), 10, now)  # a destination at its limit is skipped
    assert (first.key, first.lease_owner, first.lease_until, first.message) == (
        "jti-1:provision:0", "worker-a", now + 30, {"path": "/users", "json": {"n": 1}})
    assert [j.key for j in handoff.take(frozenset(), 10, now)] == ["jti-3:provision:0"]
    assert handoff.take(frozenset(), 10, now) == [] and handoff.drained()


def test_a_handed_job_is_the_job_its_row_reads_back_as(store: SQLiteStore) -> None:
    """The hand-off builds its Job without the dataclass constructor (Job.queued): it must be equal, field for
    field, to what a claim of the same row returns, and as immutable."""
    now = time.time()
    handoff = JobHandoff("worker-a", lease=30)
    assert store.hand_over_new_jobs(handoff)
    store.complete_event("jti-1", [], [NewJob(key="jti-1:provision:0", destination="target", action="http",
                                              message={"path": "/users", "json": {"n": 1.5, "ok": True}},
                                              rule="provision", jti="jti-1", index=0, retry={"for": 60},
                                              received_at=1.0)], now)
    [handed] = handoff.take(frozenset(), 10, now)
    stored = store.get_job(handed.id)
    assert stored is not None and handed == dataclasses.replace(stored, lease_until=now + 30)
    assert (handed.status, handed.attempts, handed.created_at, handed.due_at, handed.lease_owner) == (
        "pending", 0, now, now, "worker-a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        handed.status = "done"  # type: ignore[misc]


def test_a_job_whose_key_was_queued_already_is_not_handed_again(store: SQLiteStore) -> None:
    """An event evaluated again after a crash makes the same job keys: the stored job is not sent a second time."""
    now = time.time()
    store.complete_event("jti-1", [], [job(1)], now)  # before the hand-off: queued unleased
    [queued] = store.claim_jobs("worker-old", 30, 10, now)
    store.ack_jobs([queued.id], now)
    handoff = JobHandoff("worker-a", lease=30)
    store.hand_over_new_jobs(handoff)
    store.complete_event("jti-1", [], [job(1), job(2)], now)
    assert [j.key for j in handoff.take(frozenset(), 10, now)] == ["jti-2:provision:0"]
    assert {j.key: j.status for j in store.list_jobs()} == {"jti-1:provision:0": "done", "jti-2:provision:0": "pending"}


def test_a_full_hand_off_stores_the_rest_unleased_until_it_is_drained(store: SQLiteStore) -> None:
    now = time.time()
    handoff = JobHandoff("worker-a", lease=30, limit=2)
    store.hand_over_new_jobs(handoff)
    store.complete_event("jti-1", [], [job(1), job(2)], now)
    store.complete_event("jti-3", [], [job(3)], now)  # no room: stored for a claim
    assert handoff.overflowed
    assert [j.key for j in store.claim_jobs("worker-a", 30, 10, now)] == ["jti-3:provision:0"]
    assert len(handoff.take(frozenset(), 10, now)) == 2 and handoff.drained()
    handoff.reopen()
    store.complete_event("jti-4", [], [job(4)], now)
    assert [j.key for j in handoff.take(frozenset(), 10, now)] == ["jti-4:provision:0"]


def test_a_handed_job_whose_lease_is_half_gone_is_left_to_a_claim(store: SQLiteStore) -> None:
    """Never sent from memory when the lease is that far gone: it could end mid-send and another process claim it."""
    now = time.time()
    handoff = JobHandoff("worker-a", lease=30)
    store.hand_over_new_jobs(handoff)
    store.complete_event("jti-1", [], [job(1)], now)
    assert handoff.take(frozenset(), 10, now + 16) == []
    assert store.claim_jobs("worker-b", 30, 10, now + 16) == []  # still leased
    assert [j.key for j in store.claim_jobs("worker-b", 30, 10, now + 31)] == ["jti-1:provision:0"]


def test_a_running_worker_sends_handed_jobs_once_and_gives_back_the_rest_when_it_stops(
        store: SQLiteStore, http_peer: HttpPeer) -> None:
    actions = build_actions({"target": {"type": "http", "base_url": http_peer.url}}, ActionContext())
    worker = DeliveryWorker(store, Current(actions), DELIVERY, Metrics(), poll_interval=0.05)
    worker.start()
    try:
        store.complete_event("jti", [], [job(n) for n in range(20)], time.time())
        worker.notify(20, {"target"})
        deadline = time.monotonic() + 20
        while sum(j.status == "done" for j in store.list_jobs(limit=50)) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        assert worker.stop()
    assert sorted(r.headers["Idempotency-Key"] for r in http_peer.requests) == sorted(
        f"jti-{n}:provision:0" for n in range(20))
    assert {j.status for j in store.list_jobs(limit=50)} == {"done"}
    # a worker that stops with jobs still handed gives their leases back: the next one sends them at once
    stopped = DeliveryWorker(store, Current(actions), DELIVERY, Metrics(), owner="worker-stopped")
    stopped._start_missing_threads = lambda: None  # type: ignore[method-assign]  # started, sending nothing
    stopped.start()
    store.complete_event("jti-9", [], [job(99)], time.time())
    assert leases(store)["jti-99:provision:0"][0] == "worker-stopped"
    assert stopped.stop()
    assert [j.key for j in store.claim_jobs("worker-next", 30, 10, time.time())] == ["jti-99:provision:0"]
