"""Ordered delivery (`ordered_by:`) and captured values (`capture:`) in every store backend: jobs of one key
and destination are handed out one at a time in event order, a failing one holds the later ones back until it
is delivered or a dead letter, other keys are never held up; captures are merged, read and pruned with the
key's newest event."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from engine.store.base import IncomingEvent, NewJob, Store, capture_ref
from tests.store_backends import backend_params, open_backend

T0 = 1_700_000_000.0
WINDOW = 3600.0
LEASE = 30.0


@pytest.fixture(params=backend_params())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_backend(request.param, request, tmp_path) as backend:
        yield backend


def queue(store: Store, name: str, *, user: str = "u1", destination: str = "scim", at: float = T0) -> None:
    """An event received at `at` whose one job (key `name`) is ordered by `user` (unordered when '')."""
    incoming = IncomingEvent(jti=uuid.uuid4().hex, webhook="asgardeo", iat_ms=at * 1000, received_at=at,
                             uris=("u",), body=b"{}")
    store.ingest(incoming, WINDOW)
    job = NewJob(name, destination, "http", {"path": name}, received_at=at, ordered_by=user)
    store.complete_event(incoming.jti, [], [job], at)


def claim(store: Store, now: float = T0 + 100) -> list[str]:
    return sorted(job.key for job in store.claim_jobs("w1", LEASE, 50, now))


def by_key(store: Store) -> dict:
    return {job.key: job for job in store.list_jobs()}


def test_one_key_goes_one_at_a_time_in_event_order_others_are_not_held(store: Store) -> None:
    queue(store, "create", at=T0)
    queue(store, "update", at=T0 + 1)
    queue(store, "other-user", user="u2", at=T0 + 2)
    queue(store, "other-destination", destination="slack", at=T0 + 3)
    queue(store, "unordered", user="", at=T0 + 4)
    assert claim(store) == ["create", "other-destination", "other-user", "unordered"]
    assert claim(store) == []  # 'update' waits while 'create' is in flight
    store.ack_job(by_key(store)["create"].id, T0 + 101)
    assert claim(store) == ["update"]


def test_an_earlier_event_processed_later_still_goes_first(store: Store) -> None:
    queue(store, "later-event", at=T0 + 10)
    queue(store, "earlier-event", at=T0 + 5)
    assert claim(store) == ["earlier-event"]
    store.ack_job(by_key(store)["earlier-event"].id, T0 + 101)
    assert claim(store) == ["later-event"]


def test_a_failing_job_holds_the_key_back_until_it_is_a_dead_letter(store: Store) -> None:
    queue(store, "create", at=T0)
    queue(store, "delete", at=T0 + 1)
    queue(store, "u2-create", user="u2", at=T0 + 2)
    assert claim(store) == ["create", "u2-create"]
    store.ack_job(by_key(store)["u2-create"].id, T0 + 101)
    store.retry_job(by_key(store)["create"].id, T0 + 200, "503")
    assert claim(store, T0 + 150) == []  # 'delete' is due but held back by the failing 'create'
    assert claim(store, T0 + 200) == ["create"]
    store.dead_job(by_key(store)["create"].id, "gave up")
    assert claim(store, T0 + 201) == ["delete"]
    jobs = by_key(store)
    assert jobs["create"].status == "dead" and jobs["delete"].status == "pending"


def test_a_dead_letter_queued_again_goes_before_the_later_jobs_of_its_key(store: Store) -> None:
    queue(store, "create", at=T0)
    queue(store, "update", at=T0 + 1)
    queue(store, "delete", at=T0 + 2)
    assert claim(store) == ["create"]
    store.dead_job(by_key(store)["create"].id, "400")
    assert claim(store) == ["update"]
    store.requeue_dead(by_key(store)["create"].id, T0 + 101)
    store.ack_job(by_key(store)["update"].id, T0 + 102)
    assert claim(store, T0 + 103) == ["create"]
    store.ack_job(by_key(store)["create"].id, T0 + 104)
    assert claim(store, T0 + 105) == ["delete"]


def test_captures_merge_and_are_pruned_with_the_keys_newest_event(store: Store) -> None:
    queue(store, "a", user="alice", at=T0)
    queue(store, "b", user="bob", at=T0 + 500)
    store.capture_set(capture_ref("alice"), {"scim_id": "2819c223", "n": 1}, T0 + 1)
    store.capture_set(capture_ref("alice"), {"n": 2}, T0 + 2)
    store.capture_set(capture_ref("bob"), {"scim_id": "b0b"}, T0 + 501)
    assert store.captures(capture_ref("alice")) == {"scim_id": "2819c223", "n": 2}
    assert store.captures(capture_ref("nobody")) == {}
    store.prune(T0 + 1000, 600, WINDOW)  # alice's newest event is older than the retention, bob's is not
    assert store.captures(capture_ref("alice")) == {}
    assert store.captures(capture_ref("bob")) == {"scim_id": "b0b"}


def test_a_huge_or_hostile_key_is_bounded(store: Store) -> None:
    hostile = "x" * 100_000 + "\r\n*\x00\ud800 ]"
    queue(store, "one", user=hostile)
    queue(store, "two", user=hostile, at=T0 + 1)
    assert claim(store) == ["one"]
    job = by_key(store)["one"]
    assert len(job.order_key) == 32 and job.ordered_by == hostile
    store.capture_set(job.capture_ref, {"id": "1"}, T0)
    assert store.captures(capture_ref(hostile)) == {"id": "1"}
