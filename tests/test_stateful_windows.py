"""Threshold windows and suppression as a user sees them: when a rule fires, and why it does not."""

from __future__ import annotations

from typing import Any

from engine.match.stateful.decide import Outcome, evaluate
from engine.match.stateful.specs import StatefulSpec, Suppress, Threshold
from tests.stateful_fixtures import T0, seen, state_store  # noqa: F401 - fixture

BRUTE = StatefulSpec(threshold=Threshold(count=5, within=600, group_by=("claims.username",)))


def run(store: Any, spec: StatefulSpec, events: list, rule: str = "brute-force-user") -> list[Outcome]:
    """Evaluate each (event, arrival offset) in order; arrival defaults to the event time."""
    outcomes = []
    for item in events:
        event, arrival = item if isinstance(item, tuple) else (item, item.time - T0)
        outcomes.append(evaluate(store, rule, spec, event, T0 + arrival))
    return outcomes


def fired(outcomes: list[Outcome]) -> list[int]:
    return [i for i, outcome in enumerate(outcomes) if outcome.firing]


def test_four_in_the_window_and_one_just_outside_do_not_fire(state_store: Any) -> None:
    outcomes = run(state_store, BRUTE, [seen(0), seen(300), seen(400), seen(500), seen(600.001)])
    assert fired(outcomes) == []
    assert outcomes[-1].reason == "count 4 of 5 within 10m"


def test_five_in_the_window_fire_once_with_the_window_in_the_context(state_store: Any) -> None:
    outcomes = run(state_store, BRUTE, [seen(0), seen(100), seen(200), seen(300), seen(600), seen(601)])
    assert fired(outcomes) == [4]
    context = outcomes[4].firing.context
    assert (context["count"], context["window"], context["group"]) == (5, "10m", ["alice"])
    assert context["first_seen"].timestamp() == T0 and context["last_seen"].timestamp() == T0 + 600
    assert [item["at"] for item in context["events"]] == [0, 100, 200, 300, 600]
    assert outcomes[5].reason == "count 1 of 5 within 10m"


def test_groups_count_separately(state_store: Any) -> None:
    events = [seen(i, group=("alice",) if i % 2 else ("bob",)) for i in range(9)]
    assert fired(run(state_store, BRUTE, events)) == [8]  # bob's 5th; alice has 4


def test_distinct_counts_values_not_events(state_store: Any) -> None:
    spray = StatefulSpec(threshold=Threshold(count=3, within=300, group_by=("$.initiatorIpAddress",),
                                             distinct="claims.username"))
    ip = ("203.0.113.9",)
    events = [seen(0, group=ip, distinct="alice"), seen(1, group=ip, distinct="alice"),
              seen(2, group=ip, distinct="bob"), seen(3, group=ip, distinct="bob"), seen(4, group=ip, distinct="carol")]
    outcomes = run(state_store, spray, events, rule="password-spray-ip")
    assert fired(outcomes) == [4]
    assert outcomes[3].reason == "count 2 of 3 within 5m"
    assert outcomes[4].firing.context["count"] == 3


def test_event_without_the_distinct_value_is_not_counted(state_store: Any) -> None:
    spray = StatefulSpec(threshold=Threshold(count=1, within=300, distinct="claims.username"))
    outcome = run(state_store, spray, [seen(0)], rule="password-spray-ip")[0]
    assert outcome.firing is None
    assert outcome.reason == "not counted: threshold.distinct claims.username is missing in this event"


def test_out_of_order_event_counts_in_the_window_it_belongs_to(state_store: Any) -> None:
    spec = StatefulSpec(threshold=Threshold(count=5, within=600, late=900))
    late_one = seen(5)
    outcomes = run(state_store, spec, [seen(0), seen(1), seen(2), seen(3), seen(650), (late_one, 660)])
    assert fired(outcomes) == [5]
    context = outcomes[5].firing.context
    assert (context["first_seen"].timestamp() - T0, context["last_seen"].timestamp() - T0) == (0, 5)


def test_event_later_than_the_allowance_is_not_counted(state_store: Any) -> None:
    outcomes = run(state_store, BRUTE, [seen(0), seen(1), seen(2), seen(3), (seen(4), 65)])
    assert fired(outcomes) == []
    assert outcomes[-1].reason == "event arrived later than threshold.late after its event time"


def test_a_repeated_jti_never_counts_twice(state_store: Any) -> None:
    events = [seen(0, jti="a"), seen(1, jti="b"), seen(2, jti="c"), seen(3, jti="d"), seen(0, jti="a")]
    outcomes = run(state_store, BRUTE, events)
    assert fired(outcomes) == []
    assert outcomes[-1].reason == "event already counted (same jti)"


def test_the_trigger_evaluated_again_fires_again_with_the_same_id(state_store: Any) -> None:
    """A crash after the state commit but before the jobs were stored: evaluating the event again must
    produce the same firing (same job key), and suppression must let that same firing through."""
    spec = StatefulSpec(threshold=BRUTE.threshold, suppress=Suppress(for_=1800))
    events = [seen(i, jti=f"e{i}") for i in range(5)]
    first = run(state_store, spec, events)[4].firing
    again = run(state_store, spec, [seen(4, jti="e4")])[0].firing
    assert first is not None and again is not None and again.id == first.id
    assert run(state_store, spec, [seen(2, jti="e2")])[0].reason == "event belongs to a window that already fired"


def test_suppression_holds_for_its_duration_then_expires(state_store: Any) -> None:
    spec = StatefulSpec(suppress=Suppress(for_=1800, group_by=("claims.username",)))
    outcomes = run(state_store, spec, [seen(0), seen(1799.999), seen(1800), seen(1801, group=("bob",))],
                   rule="account-locked")
    assert fired(outcomes) == [0, 2, 3]
    assert outcomes[1].reason == "suppressed: fired for this group less than 30m ago"


def test_suppression_applies_after_a_threshold_fires(state_store: Any) -> None:
    spec = StatefulSpec(threshold=Threshold(count=2, within=600), suppress=Suppress(for_=3600))
    outcomes = run(state_store, spec, [seen(0), seen(1), seen(10), seen(11), seen(3601), seen(3602)])
    assert fired(outcomes) == [1, 5]
    assert outcomes[3].reason == "suppressed: fired for this group less than 1h ago"
    assert outcomes[1].firing.id != outcomes[5].firing.id
