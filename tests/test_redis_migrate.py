"""`idhooks migrate`: a SQLite deployment's state arrives in Redis intact, and a second run changes nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.store.state import DigestBatch, NewValueLimits, SequenceEvent, SequenceLimits, Threshold, WindowEntry
from engine.store.base import DUPLICATE, NewJob, QuarantineEntry, SubscriptionRecord
from engine.store.redis import RedisStore
from engine.store.sqlite import SQLiteStore
from tests.test_store_contract import event

DAY = 86400.0
BRUTE = Threshold(count=3, within=600)

pytestmark = pytest.mark.redis
TAKEOVER = SequenceLimits(counts=(1, 1), within=900.0)
COUNTRIES = NewValueLimits(lookback=30 * 86400.0)


def run_migrate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["migrate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def target(redis_store: RedisStore) -> RedisStore:
    return redis_store


def fill(path: Path, now: float) -> dict[str, str]:
    """A SQLite store with something of every kind; the ids of its jobs by what happened to them."""
    store = SQLiteStore(path)
    store.ingest(event("recent", at=now - DAY), 7 * DAY)
    store.ingest(event("old-pending", at=now - 60 * DAY), 7 * DAY)
    for jti, at in (("processed", now - 2 * DAY), ("expired", now - 40 * DAY)):
        store.ingest(event(jti, at=at), 7 * DAY)
        store.complete_event(jti, [{"rule": "r"}], [NewJob(f"{jti}:r:{i}", "slack", "slack", {"i": i}) for i in range(4)],
                             at)
    ids = {job.key: job.id for job in store.list_jobs()}
    store.ack_job(ids["processed:r:0"], now - DAY)
    store.retry_job(ids["processed:r:1"], now + 60, "HTTP 503", "busy")
    store.dead_job(ids["processed:r:2"], "HTTP 404", "no hook")
    store.dead_job(ids["processed:r:3"], "HTTP 503")
    store.requeue_dead(ids["processed:r:3"], now - 10)  # re-queued by an operator: a fresh retry window
    store.record_subscription(SubscriptionRecord("asgardeo", "acme.login", "subscribe", now - 5, now + DAY))
    store.quarantine_add(QuarantineEntry("q1", "asgardeo", now - 7, "bad signature", {"X-Hub-Signature": "x"},
                                         b"\x00raw"), 10, 1000)
    for i in range(2):  # two of three failures counted in an open window
        store.window_add("brute", "alice", WindowEntry(f"w{i}", now - 10 + i), BRUTE, now)
    assert store.suppress_try("quiet", "bob", now + 600, now, "firing-1")
    for i in range(3):  # a digest period not sent yet, holding two items of three matches
        store.digest_add("daily", now - 60, now + 60, now + 120, f"d{i}", now - 50 + i, {"n": i}, 2)
    store.sequence_offer("takeover", "carol", SequenceEvent("s0", now - 5, (0,)), TAKEOVER, now)  # step 1 of 2
    store.new_value_seen("new-country", "dave", "NL", "n0", now - 5, COUNTRIES, now)
    store.timer_start("never-signed-in", "erin", now + 3600, now, {"set": {}}, 10)
    store.close()
    return ids


def test_migrate_copies_everything_within_retention(tmp_path: Path, target: RedisStore, redis_available: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    ids = fill(tmp_path / "idhooks.db", now)
    source = f"sqlite:///{tmp_path}/idhooks.db"
    args = ("--from", source, "--to", redis_available, "--group", target.group)
    code, out, err = run_migrate(capsys, *args)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"copied {source} into {redis_available} (group {target.group!r}):",
        "  events                       3 copied       0 already there",
        "  jobs                         8 copied       0 already there",
        "  subscriptions                1 copied       0 already there",
        "  quarantine entries           1 copied       0 already there",
        "  rule state                   6 copied       0 already there",
    ]
    assert sorted(e.jti for e in target.list_events()) == ["old-pending", "processed", "recent"]
    assert target.get_event("processed").decisions == [{"rule": "r"}]
    assert target.ingest(event("recent", at=now), 7 * DAY) == DUPLICATE  # de-duplication came along
    assert target.get_job(ids["processed:r:0"]).status == "done"
    failed = target.get_job(ids["processed:r:1"])
    assert (failed.status, failed.attempts, failed.last_error, failed.due_at) == ("failed", 1, "HTTP 503", now + 60)
    assert [(j.id, j.last_error, j.last_response) for j in target.list_jobs("dead")] == \
        [(ids["processed:r:2"], "HTTP 404", "no hook")]
    assert [e.jti for e in target.claim_events("w", 30, 10, now)] == ["old-pending", "recent"]
    assert target.get_job(ids["processed:r:3"]).retry_window_start == now - 10
    claimable = {j.key for j in target.claim_jobs("w", 30, 100, now)}
    assert claimable == {"processed:r:3", "expired:r:0", "expired:r:1", "expired:r:2", "expired:r:3"}
    assert [s.topic for s in target.list_subscriptions()] == ["acme.login"]
    assert [(q.id, q.body) for q in target.quarantine_list()] == [("q1", b"\x00raw")]
    fired = target.window_add("brute", "alice", WindowEntry("w2", now - 5), BRUTE, now)
    assert (fired.fired, fired.count) == (True, 3)  # the window went on counting where SQLite left it
    assert target.suppress_try("quiet", "bob", now + 900, now, "firing-2") is False
    assert target.digest_due("daily", now + 120) == [DigestBatch(now - 60, now + 60, [{"n": 0}, {"n": 1}], 3)]
    assert target.sequence_offer("takeover", "carol", SequenceEvent("s1", now - 4, (1,)), TAKEOVER, now).status \
        == "completed"                                     # the sequence went on where SQLite left it
    assert target.new_value_seen("new-country", "dave", "NL", "n1", now - 4, COUNTRIES, now).status == "known"
    assert [t.group_key for t in target.timers_claim(now + 3600, 60, 10)] == ["erin"]

    code, out, err = run_migrate(capsys, *args)
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == [
        "  events                       0 copied       3 already there",
        "  jobs                         0 copied       8 already there",
        "  subscriptions                0 copied       1 already there",
        "  quarantine entries           0 copied       1 already there",
        "  rule state                   0 copied       6 already there",
    ]


@pytest.mark.parametrize(("source", "to", "message"), [
    ("sqlite:///{tmp}/missing.db", "redis://127.0.0.1:6379/15", "--from: no SQLite store at {tmp}/missing.db"),
    ("redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/15",
     "--from: expected sqlite:///PATH (migrate copies a SQLite store into Redis), got 'redis://127.0.0.1:6379/15'"),
    ("sqlite:///{tmp}/idhooks.db", "http://:s3cret@127.0.0.1/0",
     "--to: expected redis://HOST:PORT/DB, rediss://..., unix://... or redis+sentinel://HOST:26379/MASTER_NAME, "
     "got 'http://:***@127.0.0.1/0'"),
])
def test_migrate_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, to: str,
                                       message: str) -> None:
    SQLiteStore(tmp_path / "idhooks.db").close()
    code, out, err = run_migrate(capsys, "--from", source.format(tmp=tmp_path), "--to", to, "--group", "never")
    assert (code, out) == (2, "")  # a usage error: the usage line, then the problem (issue 11)
    assert err.startswith("usage: idhooks migrate ")
    assert err.endswith(f"\nidhooks migrate: error: {message.format(tmp=tmp_path)}\n")
