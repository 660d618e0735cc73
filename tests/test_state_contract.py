"""The DetectionStateStore contract (engine/store/state.py) on every backend: sequences, new
values and absence timers, including a restart of the store in the middle of a sequence and of a timer.

A new backend joins by adding a branch to `opener` (its parameters come from tests/store_backends.py) that
returns a function opening a fresh handle on the same durable store (as a restarted process would)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from engine.store.state import NewValueLimits, SequenceEvent, SequenceLimits
from engine.store.state import (ADVANCED, CAPPED, COMPLETED, DUPLICATE, IGNORED, KNOWN, LEARNING, NEW,
                                         REPLAYED, RESET, RUNNING, STARTED)
from engine.store.postgres import PostgresStore
from engine.store.redis import RedisStore
from engine.store.sqlite import SQLiteStore
from tests.store_backends import backend_params

T0 = 1_700_000_000.0
LIMITS = SequenceLimits(counts=(3, 1), within=900.0, max_groups=100)


@pytest.fixture(params=backend_params())
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """Opens a handle on one durable store; every handle opened is closed at the end."""
    opened: list[Any] = []
    if request.param == "sqlite":
        def open_store() -> Any:
            opened.append(SQLiteStore(tmp_path / "state.db"))
            return opened[-1]
    elif request.param == "redis":
        url, group = request.getfixturevalue("redis_available"), f"test-detect-{uuid.uuid4().hex[:12]}"

        def open_store() -> Any:
            opened.append(RedisStore(url, group=group, spool_dir=tmp_path / f"spool{len(opened)}"))
            return opened[-1]
    else:
        url, group = request.getfixturevalue("postgres_available"), f"test-detect-{uuid.uuid4().hex[:12]}"

        def open_store() -> Any:
            opened.append(PostgresStore(url, group=group, spool_dir=tmp_path / f"spool{len(opened)}"))
            return opened[-1]
    yield open_store
    if request.param == "redis" and opened:
        keys = list(opened[0].redis.scan_iter(match=f"{opened[0].prefix}*", count=1000))
        if keys:
            opened[0].redis.delete(*keys)
    if request.param == "postgres" and opened:
        from tests.pgutil import drop_group

        drop_group(opened[-1])
    for store in opened:
        store.close()


def fail(at: float, jti: str | None = None) -> SequenceEvent:
    return SequenceEvent(jti or uuid.uuid4().hex, T0 + at, (0,), item={"at": at})


def success(at: float, jti: str | None = None) -> SequenceEvent:
    return SequenceEvent(jti or uuid.uuid4().hex, T0 + at, (1,), item={"at": at})


# -- sequences ------------------------------------------------------------------------------------------------
def test_a_sequence_completes_once_in_order(opener) -> None:
    store = opener()
    assert store.sequence_offer("r", "g", success(0), LIMITS, T0).status == IGNORED
    assert store.sequence_offer("r", "g", fail(1), LIMITS, T0 + 1).status == STARTED
    assert store.sequence_offer("r", "g", fail(2), LIMITS, T0 + 2).status == ADVANCED
    third = store.sequence_offer("r", "g", fail(3), LIMITS, T0 + 3)
    assert (third.status, third.step) == (ADVANCED, 1)
    assert store.sequence_offer("r", "g", fail(4), LIMITS, T0 + 4).status == ADVANCED  # counted, no reset
    done = store.sequence_offer("r", "g", success(5, "s1"), LIMITS, T0 + 5)
    assert done.status == COMPLETED and done.started == T0 + 1
    assert [(s["count"], s["first"], s["last"]) for s in done.steps] == [(4, T0 + 1, T0 + 4), (1, T0 + 5, T0 + 5)]
    assert [i["at"] for i in done.steps[0]["events"]] == [1, 2, 3, 4]
    again = store.sequence_offer("r", "g", success(5, "s1"), LIMITS, T0 + 6)  # evaluated again after a crash
    assert again.status == REPLAYED and again.started == done.started and again.steps == done.steps
    assert store.sequence_offer("r", "g", success(7), LIMITS, T0 + 7).status == IGNORED


def test_a_sequence_times_out_resets_and_ignores_duplicates(opener) -> None:
    store = opener()
    store.sequence_offer("r", "g", fail(0, "a"), LIMITS, T0)
    assert store.sequence_offer("r", "g", fail(0, "a"), LIMITS, T0).status == DUPLICATE
    store.sequence_offer("r", "g", fail(1), LIMITS, T0 + 1)
    assert store.sequence_offer("r", "g", fail(1000), LIMITS, T0 + 1000).status == STARTED  # the first timed out
    reset = SequenceEvent("x", T0 + 1001, (), reset=True)
    assert store.sequence_offer("r", "g", reset, LIMITS, T0 + 1001).status == RESET
    assert store.sequence_offer("r", "g", success(1002), LIMITS, T0 + 1002).status == IGNORED


def test_groups_are_separate_and_capped(opener) -> None:
    store = opener()
    limits = SequenceLimits((2, 1), 900.0, max_groups=2)
    assert store.sequence_offer("r", "a", fail(0), limits, T0).status == STARTED
    assert store.sequence_offer("r", "b", fail(0), limits, T0).status == STARTED
    assert store.sequence_offer("r", "c", fail(0), limits, T0).status == CAPPED
    assert store.sequence_offer("other", "c", fail(0), limits, T0).status == STARTED
    assert store.sequence_offer("r", "c", fail(2000), limits, T0 + 2000).status == STARTED  # a and b timed out


def test_a_restart_in_the_middle_of_a_sequence_keeps_it(opener) -> None:
    first = opener()
    for at in (0, 1, 2):
        first.sequence_offer("r", "g", fail(at), LIMITS, T0 + at)
    first.close()
    assert opener().sequence_offer("r", "g", success(3), LIMITS, T0 + 3).status == COMPLETED


# -- new values --------------------------------------------------------------------------------------------------
SPEC = NewValueLimits(lookback=90 * 86400.0, learn_for=14 * 86400.0, max_values=3, max_groups=2)
DAY = 86400.0


def seen(store: Any, value: str, day: float, group: str = "alice", jti: str | None = None, spec: Any = SPEC):
    return store.new_value_seen("r", group, value, jti or uuid.uuid4().hex, T0 + day * DAY, spec, T0 + day * DAY)


def test_new_values_learn_then_alert_then_know(opener) -> None:
    store = opener()
    assert seen(store, "NL", 0).status == LEARNING
    assert seen(store, "NL", 1).status == KNOWN
    assert seen(store, "BE", 2).status == LEARNING
    new = seen(store, "US", 15, jti="j1")
    assert (new.status, new.group_since) == (NEW, T0)
    assert seen(store, "US", 15, jti="j1").status == REPLAYED  # the same event again after a crash
    assert seen(store, "US", 16).status == KNOWN
    assert seen(store, "BE", 100).status == NEW  # last seen 98 days ago: outside the lookback
    assert seen(store, "NL", 200).status == LEARNING  # nothing of the group within 90 days: it starts anew


def test_a_value_outside_the_lookback_is_new_again(opener) -> None:
    store = opener()
    spec = NewValueLimits(lookback=10 * DAY, learn_for=0.0, max_values=10, max_groups=10)
    assert seen(store, "NL", 0, spec=spec).status == NEW
    assert seen(store, "BE", 8, spec=spec).status == NEW
    assert seen(store, "NL", 12, spec=spec).status == NEW  # NL was last seen 12 days ago
    assert seen(store, "BE", 13, spec=spec).status == KNOWN


def test_values_per_group_and_groups_per_rule_are_bounded(opener) -> None:
    store = opener()
    spec = NewValueLimits(lookback=90 * DAY, learn_for=0.0, max_values=3, max_groups=2)
    for day, value in enumerate(["a", "b", "c"]):
        assert seen(store, value, day, spec=spec).evicted == 0
    assert seen(store, "d", 3, spec=spec).evicted == 1  # "a" (seen longest ago) makes room
    assert seen(store, "a", 4, spec=spec).status == NEW
    assert seen(store, "d", 5, spec=spec).status == KNOWN
    assert seen(store, "x", 5, group="bob", spec=spec).status == NEW
    assert seen(store, "x", 5, group="carol", spec=spec).status == CAPPED
    assert seen(store, "x", 200, group="carol", spec=spec).status == NEW  # the old groups expired


def test_new_values_survive_a_restart(opener) -> None:
    first = opener()
    seen(first, "NL", 0)
    first.close()
    store = opener()
    assert seen(store, "NL", 20).status == KNOWN
    assert seen(store, "US", 20).status == NEW


# -- absence timers -------------------------------------------------------------------------------------------------
PAYLOAD = {"set": {"jti": "t"}, "uri": "u", "webhook": "w", "group": ["alice"], "suppress_group": ["alice"]}


def test_a_timer_starts_once_and_is_claimed_by_one_caller_until_its_lease_ends(opener) -> None:
    store = opener()
    assert store.timer_start("r", "g", T0 + 100, T0, PAYLOAD, 10) == STARTED
    assert store.timer_start("r", "g", T0 + 200, T0 + 5, PAYLOAD, 10) == RUNNING
    assert store.timers_claim(T0 + 99, 60, 10) == []
    [timer] = store.timers_claim(T0 + 100, 60, 10)
    assert (timer.rule_id, timer.group_key, timer.due_at, timer.started, timer.payload) == \
           ("r", "g", T0 + 100, T0, PAYLOAD)
    assert store.timers_claim(T0 + 150, 60, 10) == []          # claimed: nobody else gets it
    assert [t.group_key for t in store.timers_claim(T0 + 161, 60, 10)] == ["g"]  # the claimer died
    store.timers_done([timer])
    assert store.timers_claim(T0 + 1000, 60, 10) == []
    assert store.timer_start("r", "g", T0 + 2000, T0 + 1000, PAYLOAD, 10) == STARTED


def test_a_cancelled_timer_never_fires_and_timers_are_capped(opener) -> None:
    store = opener()
    assert store.timer_start("r", "a", T0 + 10, T0, PAYLOAD, 2) == STARTED
    assert store.timer_start("r", "b", T0 + 10, T0, PAYLOAD, 2) == STARTED
    assert store.timer_start("r", "c", T0 + 10, T0, PAYLOAD, 2) == CAPPED
    assert store.timer_cancel("r", "a") is True
    assert store.timer_cancel("r", "a") is False
    assert store.timer_start("r", "c", T0 + 10, T0, PAYLOAD, 2) == STARTED
    assert sorted(t.group_key for t in store.timers_claim(T0 + 10, 60, 10)) == ["b", "c"]


def test_a_restarted_timer_is_not_forgotten_by_the_old_claim(opener) -> None:
    store = opener()
    store.timer_start("r", "g", T0 + 10, T0, PAYLOAD, 10)
    [old] = store.timers_claim(T0 + 10, 60, 10)
    store.timer_cancel("r", "g")
    store.timer_start("r", "g", T0 + 500, T0 + 20, PAYLOAD, 10)
    store.timers_done([old])  # the old firing finished: the new timer stays
    assert [t.due_at for t in store.timers_claim(T0 + 500, 60, 10)] == [T0 + 500]


def test_a_timer_survives_a_restart_and_many_expire_at_once(opener) -> None:
    first = opener()
    for i in range(1200):
        first.timer_start("r", f"g{i}", T0 + 10, T0, PAYLOAD, 10_000)
    first.close()
    store = opener()
    claimed: list[str] = []
    while batch := store.timers_claim(T0 + 10, 60, 500):
        claimed += [t.group_key for t in batch]
        store.timers_done(batch)
    assert sorted(claimed) == sorted(f"g{i}" for i in range(1200))


def test_pruning_removes_timed_out_sequences_and_expired_groups(opener) -> None:
    store = opener()
    store.sequence_offer("r", "g", fail(0), LIMITS, T0)
    seen(store, "NL", 0)
    before = store.state_size()
    assert store.prune_state(T0 + 100 * DAY) >= 2
    assert store.state_size() < before
