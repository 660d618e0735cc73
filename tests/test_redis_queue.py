"""The Redis delivery queue as an operator sees it with redis-cli: one stream per destination, read through
one consumer group per deployment, a claimed job pending for its worker until its outcome is recorded,
retries waiting in the due-time set, and a schema-1 queue upgraded in place."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.store import redis as redis_store
from engine.store.base import NewJob
from engine.store.redis import RedisStore
from tests.redisutil import delete_group, open_redis_store, unique_group
from tests.test_store_contract import LEASE, T0, WINDOW, event

pytestmark = pytest.mark.redis


@pytest.fixture
def store(redis_store: RedisStore) -> RedisStore:
    return redis_store


def jobs(store: RedisStore, *specs: tuple[str, str], at: float = T0) -> dict[str, str]:
    """Create jobs (key, destination) for one event; their ids by key."""
    store.ingest(event(f"e-{specs[0][0]}", at=at), WINDOW)
    store.complete_event(f"e-{specs[0][0]}", [], [NewJob(key, dest, "slack", {"key": key}) for key, dest in specs], at)
    return {j.key: j.id for j in store.list_jobs()}


def pending_for(store: RedisStore, destination: str) -> list[tuple[str, str]]:
    """(job id, consumer) for each entry the consumer group has handed out and not yet acknowledged."""
    stream = f"{store.prefix}jobs:stream:{destination}"
    out = []
    for entry in store.redis.xpending_range(stream, store.group, "-", "+", 100):
        fields = dict(store.redis.xrange(stream, entry["message_id"], entry["message_id"])[0][1])
        out.append((fields[b"job"].decode(), entry["consumer"].decode()))
    return out


def test_jobs_are_read_through_the_deployments_consumer_group(store: RedisStore) -> None:
    ids = jobs(store, ("k1", "slack"), ("k2", "mail"))
    assert store.redis.exists(f"{store.prefix}jobs:stream:slack") == 0  # queued by due time, not yet due
    claimed = store.claim_jobs("proc-a", LEASE, 10, T0 + 1)
    assert sorted(j.key for j in claimed) == ["k1", "k2"]
    for destination, key in (("slack", "k1"), ("mail", "k2")):
        stream = f"{store.prefix}jobs:stream:{destination}"
        assert [g["name"].decode() for g in store.redis.xinfo_groups(stream)] == [store.group]
        assert pending_for(store, destination) == [(ids[key], "proc-a")]
    store.ack_job(ids["k1"], T0 + 2)
    store.retry_job(ids["k2"], T0 + 100, "HTTP 503")
    # an outcome acknowledges the entry and deletes it: nothing stays pending or in the stream
    for destination in ("slack", "mail"):
        assert pending_for(store, destination) == []
        assert store.redis.xlen(f"{store.prefix}jobs:stream:{destination}") == 0
    assert store.redis.zscore(f"{store.prefix}jobs:scheduled", ids["k2"]) == T0 + 100
    assert store.claim_jobs("proc-a", LEASE, 10, T0 + 99) == []
    assert [j.key for j in store.claim_jobs("proc-b", LEASE, 10, T0 + 100)] == ["k2"]
    assert pending_for(store, "mail") == [(ids["k2"], "proc-b")]


def test_a_dead_consumers_entries_are_taken_over_with_xautoclaim(store: RedisStore) -> None:
    ids = jobs(store, ("k1", "slack"), at=time.time())
    assert [j.key for j in store.claim_jobs("dead-proc", 0.5, 10, time.time())] == ["k1"]
    time.sleep(0.6)
    assert [j.key for j in store.claim_jobs("live-proc", 0.5, 10, time.time())] == ["k1"]
    stream = f"{store.prefix}jobs:stream:slack"
    [entry] = store.redis.xpending_range(stream, store.group, "-", "+", 10)
    assert (entry["consumer"], entry["times_delivered"]) == (b"live-proc", 2)
    assert store.get_job(ids["k1"]).lease_owner == "live-proc"


def test_a_destination_in_back_off_does_not_hold_up_the_others(store: RedisStore) -> None:
    jobs(store, *[(f"s{i}", "slack") for i in range(5)], ("m0", "mail"))
    assert [j.key for j in store.claim_jobs("w", LEASE, 10, T0 + 1, frozenset({"slack"}))] == ["m0"]
    assert sorted(j.key for j in store.claim_jobs("w", LEASE, 10, T0 + 1)) == [f"s{i}" for i in range(5)]


def test_destinations_take_turns(store: RedisStore) -> None:
    jobs(store, *[(f"{d}{i}", d) for d in ("a", "b", "c") for i in range(3)])
    firsts = [store.claim_jobs("w", LEASE, 1, T0 + 1)[0].destination for _ in range(3)]
    assert sorted(firsts) == ["a", "b", "c"]


def test_idle_consumers_with_nothing_pending_are_forgotten(store: RedisStore,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    jobs(store, ("k1", "slack"), ("k2", "slack"))
    [done] = store.claim_jobs("stopped", LEASE, 1, T0 + 1)
    store.ack_job(done.id, T0 + 2)
    [held] = store.claim_jobs("running", LEASE, 1, T0 + 1)
    monkeypatch.setattr(redis_store, "_IDLE_CONSUMER_MS", 0)
    store.prune(T0 + 3, retention=3600, dedup_window=WINDOW)
    stream = f"{store.prefix}jobs:stream:slack"
    assert [c["name"] for c in store.redis.xinfo_consumers(stream, store.group)] == [b"running"]
    assert pending_for(store, "slack") == [(held.id, "running")]


def test_a_schema_1_queue_is_upgraded_in_place(redis_available: str, tmp_path: Path) -> None:
    """Schema 1 kept claimable jobs in `jobs:due` and claimed ones in `jobs:leased`; both resume on streams."""
    group = unique_group()
    first = open_redis_store(redis_available, tmp_path / "a", group)
    try:
        p, r = first.prefix, first.redis
        for job_id, due in (("j-due", T0), ("j-leased", T0 + 1)):
            r.hset(f"{p}job:{job_id}", mapping={
                "id": job_id, "key": job_id, "destination": "slack", "payload": json.dumps({}), "status": "pending",
                "attempts": 0, "created_at": repr(T0), "due_at": repr(due), "last_error": "", "last_response": "",
                "lease_owner": "old" if job_id == "j-leased" else "", "lease_until": repr(T0 + 30)})
            r.zadd(f"{p}jobs:all", {job_id: T0})
            r.zadd(f"{p}jobs:pending", {job_id: T0})
        r.zadd(f"{p}jobs:due", {"j-due": T0})
        r.zadd(f"{p}jobs:leased", {"j-leased": T0 + 30})
        r.delete(f"{p}jobs:scheduled")
        r.set(f"{p}schema", 1)
        upgraded = RedisStore(redis_available, group=group, spool_dir=tmp_path / "b")
        assert upgraded.schema_version() == 2
        assert r.exists(f"{p}jobs:due", f"{p}jobs:leased") == 0
        assert sorted(j.id for j in upgraded.claim_jobs("w", LEASE, 10, T0 + 2)) == ["j-due", "j-leased"]
        upgraded.close()
    finally:
        delete_group(first)
        first.close()


def test_an_entry_whose_job_was_deleted_by_hand_is_dropped(store: RedisStore) -> None:
    ids = jobs(store, ("k1", "slack"), ("k2", "slack"))
    store.redis.delete(f"{store.prefix}job:{ids['k1']}")  # an operator's DEL, or a half-restored backup
    assert [j.key for j in store.claim_jobs("w", LEASE, 10, T0 + 1)] == ["k2"]
    assert pending_for(store, "slack") == [(ids["k2"], "w")]
