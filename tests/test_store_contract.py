"""One contract suite, run against every store backend (SQLite, Redis and PostgreSQL: tests/store_backends.py): what
one backend does, the others must do too, so a deployment can switch backends (or migrate) without a change in behaviour."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from engine.errors import StoreError
from engine.store.base import (ACCEPTED, APPENDED, DUPLICATE, FULL, MAX_APPENDED, MISSING, NOT_EVALUATED, STALE, IncomingEvent,
                               NewJob, QuarantineEntry, Store, SubscriptionRecord)
from engine.store.postgres import PostgresStore
from engine.store.postgres_schema import MIGRATIONS as POSTGRES_MIGRATIONS
from engine.store.redis import SCHEMA_VERSION, RedisStore
from engine.store.sqlite import _MIGRATIONS, SQLiteStore
from tests.store_backends import backend_params, open_backend

T0 = 1_700_000_000.0
WINDOW = 3600.0
LEASE = 30.0


@pytest.fixture(params=backend_params(variants=True))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each backend of tests/store_backends.py: SQLite, Redis, PostgreSQL, and Redis over TLS (rediss://)."""
    with open_backend(request.param, request, tmp_path) as backend:
        yield backend


def event(jti: str | None = None, at: float = T0, age: float = 0.0, webhook: str = "asgardeo") -> IncomingEvent:
    """An event received at `at` whose iat is `age` seconds earlier."""
    return IncomingEvent(jti=jti or uuid.uuid4().hex, webhook=webhook, iat_ms=(at - age) * 1000.0,
                         received_at=at, uris=("https://schemas.identity.wso2.org/events/login",),
                         body=b'{"jti": "x", "events": {}}\xe2\x9c\x93')


def job_for(store: Store, key: str, destination: str = "slack", at: float = T0) -> str:
    """Ingest an event, complete it with one job, and return the job's id."""
    incoming = event(at=at)
    store.ingest(incoming, WINDOW)
    store.complete_event(incoming.jti, [], [NewJob(key, destination, "http", {"key": key})], at)
    return next(j.id for j in store.list_jobs() if j.key == key)


# -- life cycle ------------------------------------------------------------------------------------
def test_schema_version_and_writable(store: Store) -> None:
    newest = {RedisStore: SCHEMA_VERSION, PostgresStore: len(POSTGRES_MIGRATIONS)}.get(type(store), len(_MIGRATIONS))
    assert store.schema_version() == newest
    store.check_writable()


def test_a_store_written_by_a_newer_idhooks_is_refused(store: Store, tmp_path: Path) -> None:
    if isinstance(store, RedisStore):
        store.redis.set(store.prefix + "schema", 99)
        with pytest.raises(StoreError) as err:
            store.reopen(tmp_path / "spool")
        where = f"{store.url} (group {store.group!r})"
        ours = SCHEMA_VERSION
    elif isinstance(store, PostgresStore):
        with store._tx("test") as cur:
            cur.execute("UPDATE idhooks_meta SET version = 99")
        with pytest.raises(StoreError) as err:
            store.reopen(tmp_path / "spool")
        where, ours = f"{store.url} (group {store.group!r})", len(POSTGRES_MIGRATIONS)
    else:
        with store._tx() as conn:
            conn.execute("PRAGMA user_version = 99")
        with pytest.raises(StoreError) as err:
            SQLiteStore(store.path)
        where, ours = str(store.path), len(_MIGRATIONS)
    assert str(err.value) == f"{where} has schema version 99, newer than this idhooks ({ours}): upgrade idhooks"


# -- intake and de-duplication ---------------------------------------------------------------------
def test_ingest_stores_the_exact_event(store: Store) -> None:
    incoming = event(jti="jti-1", age=2.5)
    assert store.ingest(incoming, WINDOW) == ACCEPTED
    stored = store.get_event("jti-1")
    assert stored is not None
    assert (stored.webhook, stored.iat_ms, stored.received_at) == ("asgardeo", (T0 - 2.5) * 1000.0, T0)
    assert stored.uris == incoming.uris and stored.body == incoming.body
    assert (stored.status, stored.decisions, stored.processed_at) == ("pending", None, None)
    assert store.get_event("missing") is None


def test_duplicate_within_window_and_while_stored(store: Store) -> None:
    assert store.ingest(event("j", at=T0), WINDOW) == ACCEPTED
    assert store.ingest(event("j", at=T0 + 10), WINDOW) == DUPLICATE
    assert store.ingest(event("j", at=T0 + 2 * WINDOW), WINDOW) == DUPLICATE  # still stored: still a duplicate
    assert store.get_event("j").received_at == T0
    assert store.stats().events == {"pending": 1}


def test_jti_accepted_again_once_pruned(store: Store) -> None:
    store.ingest(event("j", at=T0), WINDOW)
    store.complete_event("j", [], [], T0)
    assert store.prune(now=T0 + 100 * WINDOW, retention=10 * WINDOW, dedup_window=WINDOW) == 1
    later = T0 + 100 * WINDOW
    assert store.ingest(event("j", at=later), WINDOW) == ACCEPTED
    assert store.get_event("j").received_at == later


def test_concurrent_duplicates_store_one(store: Store) -> None:
    results: list[str] = []
    barrier = threading.Barrier(12)

    def send() -> None:
        barrier.wait()
        results.append(store.ingest(event("racing"), WINDOW))

    threads = [threading.Thread(target=send) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [ACCEPTED] + [DUPLICATE] * 11
    assert len(store.list_events()) == 1


def test_stale_event_stored_but_never_claimed(store: Store) -> None:
    assert store.ingest(event("old", age=WINDOW + 1), WINDOW) == STALE
    assert store.get_event("old").status == "stale"
    assert store.claim_events("w1", LEASE, 10, T0 + 1) == []
    assert store.stats().events == {"stale": 1}


def test_list_events_newest_first_since_and_limit(store: Store) -> None:
    for i in range(5):
        store.ingest(event(f"e{i}", at=T0 + i), WINDOW)
    assert [e.jti for e in store.list_events()] == ["e4", "e3", "e2", "e1", "e0"]
    assert [e.jti for e in store.list_events(since=T0 + 3)] == ["e4", "e3"]
    assert [e.jti for e in store.list_events(limit=2)] == ["e4", "e3"]


def test_failed_event_is_retried_later_then_given_up_and_listed_by_status(store: Store) -> None:
    for i in range(3):
        store.ingest(event(f"e{i}", at=T0 + i), WINDOW)
    [first, *_] = store.claim_events("w1", LEASE, 10, T0 + 5)
    store.fail_event(first.jti, "evaluation failed: boom", T0 + 5, retry_at=T0 + 60)
    store.complete_events([("e1", [], []), ("e2", [], [])], T0 + 5)
    assert store.claim_events("w1", LEASE, 10, T0 + 59) == []  # not before its retry time
    [again] = store.claim_events("w1", LEASE, 10, T0 + 60)
    assert (again.jti, again.attempts, again.status) == ("e0", 1, "pending")
    store.fail_event("e0", "recording failed: \ud800", T0 + 61, retry_at=None)
    failed = store.get_event("e0")
    assert (failed.status, failed.attempts) == ("failed", 2)
    assert failed.decisions == [{"error": "recording failed: \ud800"}]
    assert store.claim_events("w1", LEASE, 10, T0 + 1000) == []
    assert [e.jti for e in store.list_events(status="failed")] == ["e0"]
    assert [e.jti for e in store.list_events(status="processed")] == ["e2", "e1"]
    assert store.list_events(status="pending") == []
    assert store.stats().events == {"processed": 2, "failed": 1}


def test_decisions_and_payloads_must_be_valid_json(store: Store) -> None:
    store.ingest(event("nan"), WINDOW)
    with pytest.raises(StoreError, match="not valid JSON"):
        store.complete_events([("nan", [{"actual": float("inf")}], [])], T0)
    with pytest.raises(StoreError, match="not valid JSON"):
        store.complete_events([("nan", [], [NewJob("k", "d", "http", {"n": float("nan")})])], T0)
    assert store.get_event("nan").status == "pending"


def test_last_accepted_per_webhook(store: Store) -> None:
    store.ingest(event(at=T0 + 5, webhook="a"), WINDOW)
    store.ingest(event(at=T0 + 1, webhook="a"), WINDOW)
    store.ingest(event(at=T0 + 3, webhook="b"), WINDOW)
    assert store.last_accepted() == {"a": T0 + 5, "b": T0 + 3}


# -- event claims ----------------------------------------------------------------------------------
def test_claim_events_oldest_first_with_lease(store: Store) -> None:
    for i in (2, 0, 1):
        store.ingest(event(f"e{i}", at=T0 + i), WINDOW)
    now = T0 + 10
    assert [e.jti for e in store.claim_events("w1", LEASE, 2, now)] == ["e0", "e1"]
    assert [e.jti for e in store.claim_events("w2", LEASE, 10, now + 1)] == ["e2"]
    assert store.claim_events("w2", LEASE, 10, now + LEASE - 1) == []
    # w1 died: once its lease ends, its events are claimable again
    assert [e.jti for e in store.claim_events("w2", LEASE, 10, now + LEASE)] == ["e0", "e1"]


def test_complete_event_records_decisions_and_jobs_once(store: Store) -> None:
    store.ingest(event("e"), WINDOW)
    store.claim_events("w1", LEASE, 10, T0)
    decisions = [{"rule": "r1", "matched": True}]
    jobs = [NewJob("e:r1:0", "slack", "slack", {"text": "hi"}), NewJob("e:r1:1", "mail", "email", {"to": "sec"})]
    store.complete_event("e", decisions, jobs, T0 + 1)
    store.complete_event("e", decisions, jobs, T0 + 2)  # re-run after a crash: no doubled delivery
    stored = store.get_event("e")
    assert (stored.status, stored.decisions, stored.processed_at) in [("processed", decisions, T0 + 1),
                                                                      ("processed", decisions, T0 + 2)]
    assert sorted((j.key, j.destination, j.message["text" if j.destination == "slack" else "to"])
                  for j in store.list_jobs()) == [("e:r1:0", "slack", "hi"), ("e:r1:1", "mail", "sec")]
    assert store.claim_events("w2", LEASE, 10, T0 + 2 * LEASE) == []


FIRED = {"rule": "r1", "matched": True, "shadow": True, "firing": "r1:abc:0:absence", "fired_by": "timer",
         "fired_at": T0 + 60, "actions": [{"index": 0, "type": "log", "destination": None, "fields": {}}]}


def test_append_decisions_adds_a_later_firing_once_and_stops_at_the_cap(store: Store) -> None:
    store.ingest(event("e"), WINDOW)
    store.complete_event("e", [{"rule": "r0", "matched": False, "failed": "absence: timer started", "actual": None}],
                         [], T0 + 1)
    assert store.append_decisions([("e", FIRED)], T0 + 61) == [APPENDED]
    assert store.append_decisions([("e", {**FIRED, "fired_at": T0 + 99})], T0 + 99) == [DUPLICATE]  # fired again
    assert store.append_decisions([("missing", FIRED)], T0 + 61) == [MISSING]
    stored = store.get_event("e")
    assert stored.status == "processed" and stored.decisions[1] == {**FIRED, "appended_at": T0 + 61}
    assert stored.decisions[0]["rule"] == "r0"
    more = [("e", {**FIRED, "firing": f"f{n}"}) for n in range(2, MAX_APPENDED + 3)]
    assert store.append_decisions(more, T0 + 100) == [APPENDED] * (MAX_APPENDED - 1) + [FULL, FULL]
    assert store.append_decisions([("e", {**FIRED, "firing": "later"})], T0 + 101) == [FULL]
    decisions = store.get_event("e").decisions
    assert len(decisions) == 1 + MAX_APPENDED + 1
    assert decisions[-1] == {"warning": f"later firings beyond {MAX_APPENDED} are not recorded on this event (the "
                                        "log lines 'shadow rule would send' and 'absence timer expired' name them)",
                             "appended_at": T0 + 100}
    assert store.append_decisions([("e", FIRED)], T0 + 102) == [DUPLICATE]


def test_append_decisions_in_one_batch_to_several_events(store: Store) -> None:
    for jti in ("a", "b"):
        store.ingest(event(jti), WINDOW)
    store.complete_event("a", [], [], T0)  # "b" is still pending
    items = [("a", FIRED), ("gone", FIRED), ("b", FIRED), ("a", {**FIRED, "rule": "r2"}), ("a", FIRED)]
    assert store.append_decisions(items, T0 + 5) == [APPENDED, MISSING, NOT_EVALUATED, APPENDED, DUPLICATE]
    assert [d["rule"] for d in store.get_event("a").decisions] == ["r1", "r2"]
    assert store.get_event("b").decisions is None  # its evaluation would have overwritten the record
    store.complete_event("b", [{"rule": "r0", "matched": False}], [], T0 + 6)
    assert store.append_decisions([("b", FIRED)], T0 + 7) == [APPENDED]
    assert store.get_event("b").decisions == [{"rule": "r0", "matched": False}, {**FIRED, "appended_at": T0 + 7}]
    assert store.append_decisions([], T0) == []
    with pytest.raises(StoreError, match="not valid JSON"):
        store.append_decisions([("b", {**FIRED, "firing": "g"}), ("a", {**FIRED, "firing": "n", "n": float("nan")})],
                               T0)
    assert len(store.get_event("b").decisions) == 2 and len(store.get_event("a").decisions) == 2  # all or nothing


def test_concurrent_appends_to_one_event_lose_nothing(store: Store) -> None:
    store.ingest(event("shared"), WINDOW)
    store.complete_event("shared", [], [], T0)
    barrier = threading.Barrier(4)

    def append(worker: int) -> None:
        barrier.wait()
        for n in range(4):
            store.append_decisions([("shared", {**FIRED, "firing": f"w{worker}:{n}"})], T0 + n)

    threads = [threading.Thread(target=append, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(d["firing"] for d in store.get_event("shared").decisions) == \
        sorted(f"w{worker}:{n}" for worker in range(4) for n in range(4))


def test_enqueue_jobs_queues_jobs_of_no_event_once_with_every_typed_field(store: Store) -> None:
    """A digest's firing: no event to complete; firing the same period again after a crash adds nothing."""
    job = NewJob("rule:digest:1700000000:0", "ops", "slack", {"text": "3 sign-ups"}, rule="rule",
                 jti="rule:digest:1700000000", index=0, retry={"retry_for": "1h"}, received_at=T0)
    store.enqueue_jobs([job], T0)
    store.enqueue_jobs([job], T0 + 5)
    [stored] = store.list_jobs()
    assert (stored.key, stored.destination, stored.action, stored.message, stored.rule, stored.jti, stored.index,
            stored.retry, stored.received_at) == (job.key, "ops", "slack", {"text": "3 sign-ups"}, "rule",
                                                  "rule:digest:1700000000", 0, {"retry_for": "1h"}, T0)
    assert (stored.status, stored.created_at, stored.due_at) == ("pending", T0, T0)
    assert [j.key for j in store.claim_jobs("w1", LEASE, 10, T0)] == [job.key]
    assert store.list_events() == []


# -- the delivery queue ----------------------------------------------------------------------------
def test_claim_jobs_when_due_oldest_first_and_held_by_one_worker(store: Store) -> None:
    first = job_for(store, "k1", at=T0)
    second = job_for(store, "k2", at=T0 + 1)
    assert store.claim_jobs("w1", LEASE, 10, T0 - 1) == []  # not due yet
    claimed = store.claim_jobs("w1", LEASE, 1, T0 + 2)
    assert [(j.id, j.lease_owner, j.attempts) for j in claimed] == [(first, "w1", 0)]
    assert [j.id for j in store.claim_jobs("w2", LEASE, 10, T0 + 3)] == [second]
    assert store.claim_jobs("w3", LEASE, 10, T0 + 4) == []  # both are held


def test_a_dead_workers_jobs_are_reclaimed_once_the_lease_ends(store: Store) -> None:
    """On the wall clock: Redis measures leases with its own clock (the stream entry's idle time), SQLite with
    the caller's `now`; a real short lease makes both mean the same."""
    lease = 1.0
    job = job_for(store, "k1", at=time.time())
    claiming = time.time()  # the lease starts after this ...
    assert [j.id for j in store.claim_jobs("w1", lease, 10, time.time())] == [job]
    held_from = time.time()  # ... and before this
    during = store.claim_jobs("w2", lease, 10, time.time())
    if time.time() < claiming + lease:  # (a machine stalled for the whole lease proves nothing here)
        assert during == []
    time.sleep(max(0.0, held_from + lease + 0.1 - time.time()))
    # w1 died holding it: w2 takes it over, and only one worker gets it
    assert [(j.id, j.lease_owner) for j in store.claim_jobs("w2", lease, 10, time.time())] == [(job, "w2")]
    assert store.claim_jobs("w3", lease, 10, time.time()) == [] or time.time() >= held_from + 2 * lease
    store.ack_job(job, time.time())
    assert store.get_job(job).status == "done"
    time.sleep(lease + 0.1)
    assert store.claim_jobs("w3", lease, 10, time.time()) == []  # an acknowledged job is never handed out again


def test_concurrent_claims_hand_each_job_out_once(store: Store) -> None:
    store.ingest(event("e"), WINDOW)
    store.complete_event("e", [], [NewJob(f"k{i}", "slack", "slack", {}) for i in range(40)], T0)
    ids = {j.id for j in store.list_jobs()}
    claimed: list[str] = []
    barrier = threading.Barrier(8)

    def worker(name: str) -> None:
        barrier.wait()
        while batch := store.claim_jobs(name, LEASE, 3, T0 + 1):
            claimed.extend(j.id for j in batch)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)


def test_claim_jobs_skips_destinations(store: Store) -> None:
    job_for(store, "k1", destination="slack")
    mail = job_for(store, "k2", destination="mail")
    assert [j.id for j in store.claim_jobs("w1", LEASE, 10, T0 + 1, frozenset({"slack"}))] == [mail]
    assert [j.destination for j in store.claim_jobs("w1", LEASE, 10, T0 + 1)] == ["slack"]


def test_ack_jobs_acknowledges_several_at_once(store: Store) -> None:
    first, second, other = (job_for(store, k) for k in ("first", "second", "other"))
    store.claim_jobs("w1", LEASE, 10, T0)
    store.ack_jobs([first, second], T0 + 1)
    store.ack_jobs([], T0 + 1)
    assert [(store.get_job(i).status, store.get_job(i).attempts, store.get_job(i).lease_owner)
            for i in (first, second)] == [("done", 1, ""), ("done", 1, "")]
    assert store.get_job(other).status == "pending"
    assert sorted(j.id for j in store.list_jobs("done")) == sorted([first, second])
    assert store.claim_jobs("w2", LEASE, 10, T0 + 2) == []  # acked: never claimable again; other: still leased


def test_ack_retry_and_dead_letters(store: Store) -> None:
    done, retried, dead = (job_for(store, k) for k in ("done", "retried", "dead"))
    store.claim_jobs("w1", LEASE, 10, T0)
    store.ack_job(done, T0 + 1)
    store.retry_job(retried, T0 + 100, "HTTP 503", "busy")
    store.dead_job(dead, "HTTP 404", "no such hook")
    assert (store.get_job(done).status, store.get_job(done).attempts) == ("done", 1)
    job = store.get_job(retried)
    assert (job.status, job.attempts, job.due_at, job.last_error, job.last_response, job.lease_owner) == \
        ("failed", 1, T0 + 100, "HTTP 503", "busy", "")
    assert store.claim_jobs("w1", LEASE, 10, T0 + 99) == []
    assert [j.id for j in store.claim_jobs("w1", LEASE, 10, T0 + 100)] == [retried]
    job = store.get_job(dead)
    assert (job.status, job.attempts, job.last_error, job.last_response) == ("dead", 1, "HTTP 404", "no such hook")
    assert [j.id for j in store.list_jobs("dead")] == [dead]
    assert [j.id for j in store.list_jobs("done")] == [done]
    assert [j.id for j in store.list_jobs("failed")] == [retried]
    assert [j.id for j in store.list_jobs("pending")] == [retried]
    assert store.get_job("nope") is None


def test_requeue_and_drop_dead(store: Store) -> None:
    a, b, c, alive = (job_for(store, k, at=T0 + i) for i, k in enumerate(("a", "b", "c", "alive")))
    for job_id in (a, b, c):
        store.dead_job(job_id, "gone")
    assert store.requeue_dead(a, T0 + 50) == 1
    assert store.requeue_dead(alive, T0 + 50) == 0
    job = store.get_job(a)
    assert (job.status, job.attempts, job.due_at) == ("pending", 0, T0 + 50)
    assert (job.created_at, job.retry_window_start) == (T0, T0 + 50)  # a full retry window again
    assert store.get_job(alive).retry_window_start == T0 + 3  # never re-queued: from its creation
    assert store.drop_dead(b) is True
    assert store.drop_dead(b) is False
    assert store.drop_dead(alive) is False
    assert store.get_job(b) is None
    assert store.requeue_dead(None, T0 + 60) == 1
    assert store.list_jobs("dead") == []
    assert sorted(j.id for j in store.claim_jobs("w", LEASE, 10, T0 + 60)) == sorted([a, c, alive])


def test_list_jobs_newest_first_and_rejects_unknown_status(store: Store) -> None:
    ids = [job_for(store, f"k{i}", at=T0 + i) for i in range(3)]
    assert [j.id for j in store.list_jobs()] == ids[::-1]
    assert [j.id for j in store.list_jobs(limit=2)] == ids[:0:-1]
    with pytest.raises(ValueError) as err:
        store.list_jobs("stuck")
    assert str(err.value) == "unknown job status 'stuck': use pending, failed, dead or done"


# -- subscriptions ---------------------------------------------------------------------------------
def test_subscriptions_keep_the_latest_per_mode(store: Store) -> None:
    store.record_subscription(SubscriptionRecord("b", "t.login", "subscribe", T0, T0 + 864000))
    store.record_subscription(SubscriptionRecord("a", "t.login", "subscribe", T0, T0 + 10))
    store.record_subscription(SubscriptionRecord("a", "t.login", "subscribe", T0 + 5, T0 + 15))
    store.record_subscription(SubscriptionRecord("a", "t.login", "denied", T0 + 6, None, "not allowed"))
    assert store.list_subscriptions() == [
        SubscriptionRecord("a", "t.login", "subscribe", T0 + 5, T0 + 15),
        SubscriptionRecord("a", "t.login", "denied", T0 + 6, None, "not allowed"),
        SubscriptionRecord("b", "t.login", "subscribe", T0, T0 + 864000),
    ]


def test_a_subscription_record_can_be_removed_alone(store: Store) -> None:
    store.record_subscription(SubscriptionRecord("a", "t.login", "subscribe", T0, T0 + 10))
    store.record_subscription(SubscriptionRecord("a", "t.login", "denied", T0 + 6, None, "not allowed"))
    assert store.remove_subscription("a", "t.login", "denied") is True
    assert store.remove_subscription("a", "t.login", "denied") is False
    assert store.list_subscriptions() == [SubscriptionRecord("a", "t.login", "subscribe", T0, T0 + 10)]


# -- quarantine ------------------------------------------------------------------------------------
def entry(entry_id: str, size: int) -> QuarantineEntry:
    return QuarantineEntry(id=entry_id, webhook="asgardeo", received_at=T0, reason="bad signature",
                           headers={"X-Hub-Signature": "sha256=00"}, body=b"x" * size)


def test_quarantine_caps_evict_the_oldest(store: Store) -> None:
    for i in range(3):
        assert store.quarantine_add(entry(f"q{i}", 10), max_entries=3, max_bytes=100).evicted == 0
    result = store.quarantine_add(entry("q3", 10), max_entries=3, max_bytes=100)
    assert (result.evicted, result.evicted_bytes, result.stored) == (1, 10, True)
    result = store.quarantine_add(entry("q4", 85), max_entries=3, max_bytes=100)
    assert (result.evicted, result.evicted_bytes) == (2, 20)
    assert [e.id for e in store.quarantine_list()] == ["q3", "q4"]
    assert store.quarantine_list()[0] == entry("q3", 10)
    assert store.quarantine_add(entry("huge", 101), max_entries=3, max_bytes=100).stored is False
    stats = store.stats()
    assert (stats.quarantine_entries, stats.quarantine_bytes) == (2, 95)
    assert store.quarantine_remove("q3") is True
    assert store.quarantine_remove("q3") is False
    assert [e.id for e in store.quarantine_list()] == ["q4"]
    assert store.stats().quarantine_bytes == 85


def test_a_full_quarantine_evicts_from_the_source_holding_the_most(store: Store) -> None:
    def sent(entry_id: str, source: str) -> QuarantineEntry:
        return replace(entry(entry_id, 10), source=source)

    store.quarantine_add(sent("genuine", "192.0.2.1"), max_entries=4, max_bytes=1000)
    store.quarantine_add(sent("other", "192.0.2.2"), max_entries=4, max_bytes=1000)
    evicted = sum(store.quarantine_add(sent(f"flood{i}", "198.51.100.9"), max_entries=4, max_bytes=1000).evicted
                  for i in range(30))
    assert evicted == 28
    assert [(e.id, e.source) for e in store.quarantine_list()] == [
        ("genuine", "192.0.2.1"), ("other", "192.0.2.2"), ("flood28", "198.51.100.9"), ("flood29", "198.51.100.9")]
    store.quarantine_add(sent("third", "192.0.2.3"), max_entries=4, max_bytes=1000)
    assert [e.id for e in store.quarantine_list()] == ["genuine", "other", "flood29", "third"]
    assert store.quarantine_remove("flood29") is True
    store.quarantine_add(sent("fourth", "192.0.2.4"), max_entries=4, max_bytes=1000)
    store.quarantine_add(sent("fifth", "192.0.2.5"), max_entries=4, max_bytes=1000)  # a tie: the oldest goes
    assert [e.id for e in store.quarantine_list()] == ["other", "third", "fourth", "fifth"]


# -- housekeeping ----------------------------------------------------------------------------------
def test_prune_keeps_pending_events_and_live_jobs(store: Store) -> None:
    store.ingest(event("old-pending", at=T0), WINDOW)
    store.ingest(event("old-done", at=T0), WINDOW)
    store.complete_event("old-done", [], [], T0)
    store.ingest(event("new", at=T0 + 50), WINDOW)
    store.complete_event("new", [], [], T0 + 50)
    acked, live = job_for(store, "acked", at=T0), job_for(store, "live", at=T0)
    store.ack_job(acked, T0 + 1)
    assert store.prune(now=T0 + 60, retention=20, dedup_window=WINDOW) == 3  # old-done + the jobs' events
    assert sorted(e.jti for e in store.list_events()) == sorted(["old-pending", "new"])
    assert store.get_job(acked) is None and store.get_job(live) is not None


def test_stats_count_by_status(store: Store) -> None:
    store.ingest(event("pending"), WINDOW)
    store.ingest(event("stale", age=2 * WINDOW), WINDOW)
    failed, dead = job_for(store, "failed"), job_for(store, "dead")
    job_for(store, "pending")
    store.retry_job(failed, T0 + 5, "timeout")
    store.dead_job(dead, "HTTP 400")
    stats = store.stats()
    assert stats.events == {"pending": 1, "stale": 1, "processed": 3}
    assert stats.jobs == {"pending": 1, "failed": 1, "dead": 1}


# -- pages for the API and console (engine/ops) ----------------------------------------------------------
def test_events_before_pages_newest_first_with_ties_in_jti_order(store: Store) -> None:
    for jti, at in (("b", T0), ("a", T0), ("c", T0 + 1), ("d", T0 + 2), ("e", T0 - 5)):
        store.ingest(event(jti, at=at), WINDOW)
    listed, before = [], None
    while True:
        page = store.events_before(before, None, None, 2)
        if not page:
            break
        listed += [e.jti for e in page]
        before = (page[-1].received_at, page[-1].jti)
    assert listed == ["d", "c", "a", "b", "e"]
    assert [e.jti for e in store.events_before(None, T0 - 1, T0 + 1, 10)] == ["c", "a", "b"]


def test_jobs_before_filters_by_status_and_destination_and_jobs_for_event(store: Store) -> None:
    store.ingest(event("ev-1"), WINDOW)
    store.complete_event("ev-1", [], [NewJob("ev-1:r:0", "slack", "slack", {}, jti="ev-1"),
                                      NewJob("ev-1:r:1", "mail", "email", {}, jti="ev-1")], T0)
    store.enqueue_jobs([NewJob("other:0", "slack", "slack", {}, jti="ev-10")], T0 + 1)
    assert sorted(j.key for j in store.jobs_for_event("ev-1")) == ["ev-1:r:0", "ev-1:r:1"]
    assert [j.key for j in store.jobs_before(None, "slack", None, 10)] == ["other:0", "ev-1:r:0"]
    first = store.jobs_before("pending", None, None, 1)
    rest = store.jobs_before("pending", None, (first[0].created_at, first[0].id), 10)
    assert len(first + rest) == 3 and first[0].key == "other:0"
    assert store.jobs_before("dead", None, None, 10) == []
