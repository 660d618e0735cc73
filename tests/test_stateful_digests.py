"""Digests: one firing per period, in event-time order, at the period's end plus the late allowance."""

from __future__ import annotations

from typing import Any

import pytest

from engine.match.stateful.decide import Firing, evaluate, fire_due_digests
from engine.match.stateful.specs import Digest, StatefulSpec
from tests.stateful_fixtures import T0, seen, state_store  # noqa: F401 - fixture

HOURLY = Digest(every=3600, max_items=3, late=60)
SPEC = StatefulSpec(digest=HOURLY)
START = 1_699_999_200.0  # T0 rounded down to the hour: the first period starts here
OFFSET = T0 - START      # T0 is 800 s into that period


def at(seconds_into_first_period: float, **kwargs: Any) -> Any:
    return seen(seconds_into_first_period - OFFSET, **kwargs)


def collect(store: Any, events: list, now: float | None = None) -> list[str]:
    return [evaluate(store, "hourly-registrations", SPEC, event, now or event.time).reason for event in events]


def tick(store: Any, now: float) -> list[tuple[str, Firing]]:
    sent: list[tuple[str, Firing]] = []
    fire_due_digests(store, {"hourly-registrations": HOURLY}, now, lambda rule, firing: sent.append((rule, firing)))
    return sent


def test_periods_split_at_the_hour_and_fire_after_the_late_allowance(state_store: Any) -> None:
    collect(state_store, [at(3599.999, jti="b"), at(10, jti="a"), at(3600, jti="c")])
    assert tick(state_store, START + 3600 + 59.999) == []
    [(rule, firing)] = tick(state_store, START + 3660)
    assert rule == "hourly-registrations"
    assert firing.id == f"hourly-registrations:digest:{int(START)}"
    assert [event["jti"] for event in firing.context["events"]] == ["a", "b"]
    period = firing.context["period"]
    assert (period["start"].timestamp(), period["end"].timestamp(), period["every"]) == (START, START + 3600, "1h")
    assert firing.context["count"] == 2
    assert tick(state_store, START + 3660) == []
    [(_, second)] = tick(state_store, START + 7260)
    assert [event["jti"] for event in second.context["events"]] == ["c"]


def test_items_are_bounded_but_every_match_is_counted(state_store: Any) -> None:
    reasons = collect(state_store, [at(i, jti=f"e{i}") for i in range(5)] + [at(0, jti="e0")])
    assert reasons[-1].startswith("already in the digest period starting ")
    [(_, firing)] = tick(state_store, START + 3660)
    assert [event["jti"] for event in firing.context["events"]] == ["e0", "e1", "e2"]
    assert firing.context["count"] == 5


def test_an_event_too_late_for_its_period_joins_the_current_one(state_store: Any) -> None:
    collect(state_store, [at(10, jti="on-time")])
    assert len(tick(state_store, START + 3660)) == 1
    collect(state_store, [at(20, jti="straggler")], now=START + 3700)
    assert tick(state_store, START + 3660 + 3599) == []
    [(_, firing)] = tick(state_store, START + 7260)
    assert firing.id.endswith(f":digest:{int(START + 3600)}")
    assert [event["jti"] for event in firing.context["events"]] == ["straggler"]


def test_a_period_stays_until_its_firing_was_handed_over(state_store: Any) -> None:
    """If enqueueing fails, the period is not forgotten: the next tick sends it again (same id)."""
    collect(state_store, [at(10, jti="a")])

    def broken(rule: str, firing: Firing) -> None:
        raise OSError("queue unavailable")

    with pytest.raises(OSError):
        fire_due_digests(state_store, {"hourly-registrations": HOURLY}, START + 3660, broken)
    [(_, firing)] = tick(state_store, START + 3660)
    assert firing.id == f"hourly-registrations:digest:{int(START)}"
