"""The state itself: bounded under a flood, pruned back to nothing, durable across a restart, and exact
when several workers count the same window at once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from engine.match.stateful.decide import evaluate
from engine.match.stateful.specs import StatefulSpec, Suppress
from engine.store.state import CAPPED, Threshold
from engine.store.sqlite import SQLiteStore
from tests.stateful_fixtures import T0, seen, state_store  # noqa: F401 - fixture

CAPPED_SPEC = StatefulSpec(threshold=Threshold(count=5, within=600, late=60, max_groups=50))


def test_a_flood_of_distinct_keys_stops_at_the_cap(state_store: Any) -> None:
    outcomes = [evaluate(state_store, "brute-force-user", CAPPED_SPEC, seen(i * 0.01, group=(f"user-{i}",)), T0 + 1)
                for i in range(80)]
    capped = [i for i, outcome in enumerate(outcomes) if outcome.status == CAPPED]
    assert capped == list(range(50, 80))
    assert outcomes[50].reason == "not counted: the rule holds threshold.max_groups groups"
    assert evaluate(state_store, "brute-force-user", CAPPED_SPEC, seen(2, group=("user-3",)), T0 + 2).status != CAPPED
    size = state_store.state_size()
    assert size <= 55, size


def test_expired_groups_make_room_and_pruning_shrinks_the_state_back(state_store: Any) -> None:
    for i in range(50):
        evaluate(state_store, "brute-force-user", CAPPED_SPEC, seen(0, group=(f"user-{i}",)), T0)
    suppressed = StatefulSpec(suppress=Suppress(for_=60, group_by=("claims.username",)))
    evaluate(state_store, "account-locked", suppressed, seen(0), T0)
    later = T0 + 600 + 60 + 1  # every window has expired
    assert evaluate(state_store, "brute-force-user", CAPPED_SPEC, seen(661, group=("new",)), later).status != CAPPED
    assert state_store.state_size() <= 5  # one window and one suppression, plus their indexes
    assert state_store.prune_state(T0 + 2 * 661) >= 2
    assert state_store.state_size() == 0


def test_a_window_survives_a_restart(tmp_path: Path) -> None:
    spec = StatefulSpec(threshold=Threshold(count=3, within=600))
    store = SQLiteStore(tmp_path / "state.db")
    assert [evaluate(store, "r", spec, seen(i), T0 + i).firing for i in range(2)] == [None, None]
    store.close()
    reopened = SQLiteStore(tmp_path / "state.db")
    assert evaluate(reopened, "r", spec, seen(2), T0 + 2).firing is not None
    reopened.close()


def test_concurrent_workers_never_lose_a_count_or_fire_twice(state_store: Any) -> None:
    spec = StatefulSpec(threshold=Threshold(count=40, within=600), suppress=Suppress(for_=3600))
    firings: list[Any] = []
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(10):
                outcome = evaluate(state_store, "r", spec, seen(offset + i * 4), T0 + 50)
                if outcome.firing:
                    firings.append(outcome.firing)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and len(firings) == 1
    assert firings[0].context["count"] == 40
