"""`idhooks migrate` between any two backends (SQLite, Redis, PostgreSQL): the source deployment's state arrives
intact, rule state included, and a second run changes nothing."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from engine.cli import main
from engine.store.state import (ADVANCED, COMPLETED, KNOWN, NEW, STARTED, DigestBatch, NewValueLimits, SequenceEvent,
                                SequenceLimits, Threshold, WindowEntry)
from engine.store.base import DUPLICATE, NewJob, QuarantineEntry, Store, SubscriptionRecord
from engine.store.sqlite import SQLiteStore
from tests.test_store_contract import event

DAY = 86400.0
BRUTE = Threshold(count=3, within=600)
SEQUENCE = SequenceLimits(counts=(3, 1), within=900)
NEW_IP = NewValueLimits(lookback=30 * DAY)

NAMES = ("sqlite", "redis", "postgres")
MARKS = {"sqlite": [], "redis": [pytest.mark.redis], "postgres": [pytest.mark.postgres]}
PAIRS = [pytest.param(a, b, marks=MARKS[a] + MARKS[b], id=f"{a}-to-{b}") for a, b in itertools.permutations(NAMES, 2)]


def run_migrate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["migrate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


class Side:
    """One end of a migration: a deployment of backend `name` (its URL and group) and how to open it."""

    def __init__(self, request: pytest.FixtureRequest, name: str, folder: Path) -> None:
        self.name, self.folder = name, folder
        if name == "sqlite":
            self.url, self.group = f"sqlite:///{folder}/idhooks.db", "idhooks"
        elif name == "redis":
            from tests.redisutil import unique_group

            self.url, self.group = request.getfixturevalue("redis_available"), unique_group()
        else:
            from tests.pgutil import unique_group as pg_group

            self.url, self.group = request.getfixturevalue("postgres_available"), pg_group()
        self.opened: list[Store] = []

    def open(self) -> Any:
        if self.name == "sqlite":
            store: Store = SQLiteStore(self.folder / "idhooks.db")
        elif self.name == "redis":
            from tests.redisutil import open_redis_store

            store = open_redis_store(self.url, self.folder / "spool", self.group)
        else:
            from tests.pgutil import open_postgres_store

            store = open_postgres_store(self.url, self.folder / "spool", self.group)
        self.opened.append(store)
        return store

    def clean(self) -> None:
        for store in self.opened:
            store.close()
        if self.name != "sqlite" and self.opened:
            from tests.pgutil import drop_group
            from tests.redisutil import delete_group

            store = self.open()
            (delete_group if self.name == "redis" else drop_group)(store)
            store.close()


@pytest.fixture
def sides(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    made: list[Side] = []

    def make(name: str, role: str) -> Side:
        (tmp_path / role).mkdir()
        made.append(Side(request, name, tmp_path / role))
        return made[-1]

    yield make
    for side in made:
        side.clean()


def fill(store: Store, now: float) -> dict[str, str]:
    """A store with something of every kind; the ids of its jobs by what happened to them."""
    store.ingest(event("recent", at=now - DAY), 7 * DAY)
    store.ingest(event("old-pending", at=now - 60 * DAY), 7 * DAY)
    for jti, at in (("processed", now - 2 * DAY), ("expired", now - 40 * DAY)):
        store.ingest(event(jti, at=at), 7 * DAY)
        store.complete_event(jti, [{"rule": "r"}],
                             [NewJob(f"{jti}:r:{i}", "slack", "slack", {"i": i}) for i in range(4)], at)
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
    for i in range(2):  # a sequence under way: two of the three failures before a success
        store.sequence_offer("takeover", "alice", SequenceEvent(f"s{i}", now - 20 + i, (0,)), SEQUENCE, now)
    assert store.new_value_seen("new-ip", "alice", "10.0.0.1\x00", "v1", now - 5, NEW_IP, now).status == NEW
    assert store.timer_start("no-login", "bob", now + 300, now - 1, {"user": "bob"}, 10) == STARTED
    store.capture_set("scim-ref", {"scim_id": "u-1", "etag": 'W/"1"'}, now - 30)  # what a later job sends
    store.enqueue_jobs([NewJob(f"ordered:{n}", "scim", "http", {"n": n}, rule="provision", ordered_by="alice",
                               received_at=now - 20 + n) for n in (1, 0)], now - 5)  # queued out of event order
    return ids


@pytest.mark.parametrize(("source_name", "target_name"), PAIRS)
def test_migrate_copies_everything_within_retention(sides: Any, source_name: str, target_name: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    source_side, target_side = sides(source_name, "source"), sides(target_name, "target")
    source = source_side.open()
    ids = fill(source, now)
    source.close()
    args = ("--from", source_side.url, "--from-group", source_side.group, "--to", target_side.url,
            "--group", target_side.group)
    code, out, err = run_migrate(capsys, *args)
    assert (code, err) == (0, "")
    where = "" if target_name == "sqlite" else f" (group {target_side.group!r})"
    target = target_side.open()
    assert out.splitlines() == [
        f"copied {source_side.url} into {target.url}{where}:",
        "  events                       3 copied       0 already there",
        "  jobs                        10 copied       0 already there",
        "  subscriptions                1 copied       0 already there",
        "  quarantine entries           1 copied       0 already there",
        "  rule state                   6 copied       0 already there",
        "  captured values              1 copied       0 already there",
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
    claimed = target.claim_jobs("w", 30, 100, now)
    assert {j.key for j in claimed} == {"processed:r:3", "expired:r:0", "expired:r:1", "expired:r:2", "expired:r:3",
                                        "ordered:0"}  # one at a time per order key, the earliest event first
    target.ack_jobs([j.id for j in claimed if j.key == "ordered:0"], now)
    assert [j.key for j in target.claim_jobs("w", 30, 100, now)] == ["ordered:1"]
    assert target.captures("scim-ref") == {"scim_id": "u-1", "etag": 'W/"1"'}
    assert [s.topic for s in target.list_subscriptions()] == ["acme.login"]
    assert [(q.id, q.body) for q in target.quarantine_list()] == [("q1", b"\x00raw")]
    fired = target.window_add("brute", "alice", WindowEntry("w2", now - 5), BRUTE, now)
    assert (fired.fired, fired.count) == (True, 3)  # the window went on counting where SQLite left it
    assert target.suppress_try("quiet", "bob", now + 900, now, "firing-2") is False
    assert target.digest_due("daily", now + 120) == [DigestBatch(now - 60, now + 60, [{"n": 0}, {"n": 1}], 3)]
    assert target.sequence_offer("takeover", "alice", SequenceEvent("s2", now - 15, (0,)), SEQUENCE, now).status \
        == ADVANCED  # the third failure: the sequence went on where the source left it
    done = target.sequence_offer("takeover", "alice", SequenceEvent("s3", now - 14, (1,)), SEQUENCE, now)
    assert (done.status, done.steps[0]["count"]) == (COMPLETED, 3)
    assert target.new_value_seen("new-ip", "alice", "10.0.0.1\x00", "v2", now, NEW_IP, now).status == KNOWN
    assert target.new_value_seen("new-ip", "alice", "10.0.0.2", "v3", now, NEW_IP, now).status == NEW
    assert target.timers_claim(now + 299, 30, 10) == []
    [timer] = target.timers_claim(now + 300, 30, 10)
    assert (timer.rule_id, timer.group_key, timer.payload) == ("no-login", "bob", {"user": "bob"})

    code, out, err = run_migrate(capsys, *args)
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == [
        "  events                       0 copied       3 already there",
        "  jobs                         0 copied      10 already there",
        "  subscriptions                0 copied       1 already there",
        "  quarantine entries           0 copied       1 already there",
        "  rule state                   0 copied       6 already there",
        "  captured values              0 copied       1 already there",
    ]


@pytest.mark.parametrize(("source", "to", "message"), [
    ("sqlite:///{tmp}/missing.db", "redis://127.0.0.1:6379/15", "--from: no SQLite store at {tmp}/missing.db"),
    ("sqlite:///{tmp}/idhooks.db", "sqlite:///{tmp}/idhooks.db",
     "--to: the same store as --from (give another URL, or another --group)"),
    ("sqlite:///{tmp}/idhooks.db", "http://:s3cret@127.0.0.1/0",
     "--to: expected sqlite:///PATH, redis://HOST:PORT/DB (rediss://, unix://, redis+sentinel://) or "
     "postgresql://HOST:5432/DBNAME, got 'http://:***@127.0.0.1/0'"),
    ("mysql://u:s3cret@h/db", "sqlite:///{tmp}/idhooks.db",
     "--from: expected sqlite:///PATH, redis://HOST:PORT/DB (rediss://, unix://, redis+sentinel://) or "
     "postgresql://HOST:5432/DBNAME, got 'mysql://u:***@h/db'"),
])
def test_migrate_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, to: str,
                                       message: str) -> None:
    SQLiteStore(tmp_path / "idhooks.db").close()
    code, out, err = run_migrate(capsys, "--from", source.format(tmp=tmp_path), "--to", to.format(tmp=tmp_path))
    assert (code, out) == (2, "")  # a usage error: the usage line, then the problem
    assert err.startswith("usage: idhooks migrate ")
    assert err.endswith(f"\nidhooks migrate: error: {message.format(tmp=tmp_path)}\n")


def test_a_password_file_is_for_postgresql_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    SQLiteStore(tmp_path / "idhooks.db").close()
    (tmp_path / "pw").write_text("x")
    code, _, err = run_migrate(capsys, "--from", f"sqlite:///{tmp_path}/idhooks.db", "--to", "redis://127.0.0.1/0",
                               "--password-file", str(tmp_path / "pw"))
    assert code == 2 and err.endswith("\nidhooks migrate: error: --password-file: only used with a PostgreSQL store\n")
