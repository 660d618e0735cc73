"""Intake stores a new event already leased to the running processor and hands it over in memory
(engine/store/handoff.py, issue 14): a shortcut past the claim that may never lose an event, evaluate one
twice, or change the order in which events are evaluated."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from engine.match.processor import Processor
from engine.match.ruleset import RuleSet
from engine.match.stateful.evaluator import StatefulRules
from engine.metrics import Metrics
from engine.runtime import Current
from engine.store.base import IncomingEvent
from engine.store.handoff import EventHandoff
from engine.store.sqlite import SQLiteStore
from tests.conftest import sample_event


def incoming(n: int, at: float) -> IncomingEvent:
    event = sample_event()
    event["jti"] = f"jti-{n:03d}"
    event["iat"] = at * 1000
    return IncomingEvent(event["jti"], "asgardeo", event["iat"], at, tuple(event["events"]),
                         json.dumps(event).encode())


class RecordingStore(SQLiteStore):
    """Remembers the order in which events were recorded as processed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.recorded: list[str] = []

    def complete_events(self, items, now):  # type: ignore[no-untyped-def]
        super().complete_events(items, now)
        self.recorded += [jti for jti, _, _ in items]


def processor_for(store: SQLiteStore, clock: list[float]) -> Processor:
    return Processor(store, Current(StatefulRules(RuleSet([]), store)), metrics=Metrics(), clock=lambda: clock[0])


def test_a_handed_event_is_leased_to_its_processor_and_given_back_when_it_stops(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "idhooks.db")
    now = time.time()
    handoff = EventHandoff("processor-a", lease=60)
    assert store.hand_over_new_events(handoff)
    for n in range(3):
        assert store.ingest(incoming(n, now), 86400) == "accepted"
    assert store.claim_events("processor-b", 60, 10, now) == []  # leased to processor-a: nobody else claims
    assert [e.jti for e in handoff.take(10, now)] == ["jti-000", "jti-001", "jti-002"]
    store.hand_over_new_events(None)
    store.ingest(incoming(3, now), 86400)  # no hand-off now: stored unleased
    store.release_leases("processor-a", ["jti-000", "jti-001", "jti-002"])
    assert [e.jti for e in store.claim_events("processor-b", 60, 10, now)] == [
        "jti-000", "jti-001", "jti-002", "jti-003"]
    store.close()


def test_a_running_processor_evaluates_each_event_once_in_order(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "idhooks.db")
    clock = [time.time()]
    store.ingest(incoming(0, clock[0] - 5), 86400)  # stored before the processor started: claimed first
    processor = processor_for(store, clock)
    processor.start()
    try:
        for n in range(1, 40):
            store.ingest(incoming(n, clock[0]), 86400)
        deadline = time.monotonic() + 20
        while len(store.recorded) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        processor.stop()
    assert store.recorded == [f"jti-{n:03d}" for n in range(40)]
    assert {e.status for e in store.list_events(limit=100)} == {"processed"}
    store.close()


def test_a_full_hand_off_closes_and_order_is_kept_by_claiming_what_followed(tmp_path: Path) -> None:
    """Handed events are evaluated first; those stored unleased while it was full are claimed after them,
    oldest first; then events are handed again."""
    store = RecordingStore(tmp_path / "idhooks.db")
    clock = [time.time()]
    processor = processor_for(store, clock)
    handoff = EventHandoff(processor.owner, processor.lease, limit=2)
    store.hand_over_new_events(handoff)
    processor._handoff = handoff  # as start() does, without its thread: run_once below is the loop's step
    for n in range(5):
        store.ingest(incoming(n, clock[0]), 86400)
    assert handoff.overflowed
    assert processor.run_once() == 5
    assert store.recorded == ["jti-000", "jti-001", "jti-002", "jti-003", "jti-004"]
    store.ingest(incoming(5, clock[0]), 86400)
    assert [e.jti for e in handoff.take(10, clock[0])] == ["jti-005"]  # handed again
    store.close()


def test_a_handed_event_whose_lease_is_half_gone_is_left_to_a_claim(tmp_path: Path) -> None:
    """Never evaluated from memory once a claim could also lease it: it is claimed when its lease ends."""
    store = SQLiteStore(tmp_path / "idhooks.db")
    now = time.time()
    handoff = EventHandoff("processor-a", lease=60)
    store.hand_over_new_events(handoff)
    store.ingest(incoming(0, now), 86400)
    assert handoff.take(10, now + 31) == []
    assert store.claim_events("processor-a", 60, 10, now + 59) == []  # still leased
    assert [e.jti for e in store.claim_events("processor-a", 60, 10, now + 61)] == ["jti-000"]
    store.close()


def test_one_batch_of_new_stored_and_repeated_events_answers_each_correctly(tmp_path: Path) -> None:
    """The group commit inserts a batch with one statement; which events were new is told without RETURNING
    (issue 14), also when the batch mixes new events, stored ones and two copies of one event."""
    from engine.store.sqlite import _Pending

    store = SQLiteStore(tmp_path / "idhooks.db")
    now = time.time()
    for n in (1, 3):
        assert store.ingest(incoming(n, now), 86400) == "accepted"
    old = dataclasses.replace(incoming(9, now), iat_ms=(now - 7200) * 1000)  # older than the window: stale
    batch = [_Pending(event, 3600) for event in
             (incoming(0, now), incoming(1, now), incoming(2, now), incoming(2, now), incoming(3, now), old)]
    store._commit_batch(batch)
    assert [p.result for p in batch] == ["accepted", "duplicate", "accepted", "duplicate", "duplicate", "stale"]
    assert {e.jti: e.status for e in store.list_events(limit=10)} == {
        "jti-000": "pending", "jti-001": "pending", "jti-002": "pending", "jti-003": "pending", "jti-009": "stale"}
    store.close()
