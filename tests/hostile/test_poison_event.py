"""Issue 12 item 3 and the class "one event never blocks another": an event whose decision would not be valid
JSON, whose evaluation raises or whose recording fails is held back alone (retried a bounded number of times,
then 'failed' with the reason); the events around it are processed and delivered."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from engine.cli import main
from engine.match.processor import RETRY_DELAYS, Processor, finite
from engine.match.stateful.evaluator import StatefulRules
from engine.metrics import Metrics
from engine.runtime import Current
from engine.store.base import IncomingEvent
from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, sample_event, signed
from tests.peers import HttpPeer, http_peer  # noqa: F401 - fixture
from tests.rules_support import write_rules

T0 = 1_800_000_000.0
RULES = """
rules:
  - id: counted
    event: login.loginFailed
    when:
      all:
        - {path: $.count, lt: 0}
    actions:
      - log: {message: "never"}
  - id: every-failure
    event: login.loginFailed
    actions:
      - log: {message: "failed login for {{ username }}"}
"""


def raw_event(count: str = "1", jti: str | None = None) -> IncomingEvent:
    """A stored event whose body holds `count` as written: `1e999` is a number JSON parses to infinity."""
    event = sample_event()
    event["jti"] = jti or str(uuid.uuid4())
    event["iat"] = int(T0 * 1000)
    next(iter(event["events"].values()))["count"] = "<count>"
    body = json.dumps(event).replace('"<count>"', count)
    assert json.loads(body)  # still one JSON document
    return IncomingEvent(jti=event["jti"], webhook="asgardeo", iat_ms=T0 * 1000, received_at=T0,
                         uris=tuple(event["events"]), body=body.encode())


@pytest.fixture
def store(tmp_path: Path):
    store = SQLiteStore(tmp_path / "idhooks.db")
    yield store
    store.close()


def processor_for(tmp_path: Path, store: SQLiteStore, clock=lambda: T0, rules=None) -> tuple[Processor, Metrics]:
    from engine.match import load_ruleset

    folder = tmp_path / "rules"
    write_rules(folder, RULES)
    ruleset = rules or StatefulRules(load_ruleset([folder], destinations={}, webhooks=["asgardeo"]), store)
    metrics = Metrics()
    return Processor(store, Current(ruleset), metrics=metrics, clock=clock), metrics


def test_an_event_that_no_longer_parses_is_failed_alone_and_its_batch_processed(tmp_path, store):
    """An old database may hold a body intake now refuses (`1e999`, parsed as infinity, made the stored
    decision invalid JSON and rolled back the whole batch, every 60 s, forever)."""
    good = [raw_event() for _ in range(50)]
    poison = raw_event("1e999")
    for event in good[:25] + [poison] + good[25:]:
        store.ingest(event, 3600)
    processor, metrics = processor_for(tmp_path, store)
    assert processor.run_once() == 51
    assert all(store.get_event(e.jti).status == "processed" for e in good)
    assert len(store.list_jobs(limit=1000)) == 50  # every good event's log action was queued
    failed = store.get_event(poison.jti)
    assert (failed.status, failed.attempts) == ("failed", 1)  # it can never parse: no retries
    assert failed.decisions == [{"error": "evaluation failed: PayloadError: number '1e999' is out of range: it "
                                          "would be stored as infinity"}]
    assert metrics.event_failures.labels("failed")._value.get() == 1
    with sqlite3.connect(tmp_path / "idhooks.db") as db:
        assert db.execute("SELECT COUNT(*) FROM events WHERE NOT json_valid(decisions)").fetchone() == (0,)


def test_non_finite_numbers_in_records_become_strings():
    """Defence in depth behind intake and the stores (which refuse NaN/Infinity): what the processor records
    is valid JSON even if a rule computed a non-finite number."""
    record = {"actual": float("inf"), "values": [float("-inf"), float("nan"), 1.5], "n": {"x": 2}}
    assert finite(record) == {"actual": "Infinity", "values": ["-Infinity", "NaN", 1.5], "n": {"x": 2}}
    json.dumps(finite(record), allow_nan=False)


class _Rules:
    """The real rule set, except that it raises for one event and returns an unrecordable record for
    another: stands for a rule or plugin bug that only some events reach."""

    def __init__(self, real: Any, raise_for: str, unrecordable_for: str) -> None:
        self.real, self.raise_for, self.unrecordable_for = real, raise_for, unrecordable_for

    def evaluate(self, envelope: Any, uri: str, webhook: str, *, now: float) -> list[Any]:
        if envelope.jti == self.raise_for:
            raise RecursionError("maximum recursion depth exceeded \ud800")
        decisions = self.real.evaluate(envelope, uri, webhook, now=now)
        if envelope.jti == self.unrecordable_for:
            return [_Unrecordable(), *decisions]
        return decisions


class _Unrecordable:
    matched = False

    @staticmethod
    def to_json() -> dict[str, Any]:
        return {"rule": "x", "matched": False, "actual": object()}


def test_failing_events_are_held_back_alone_retried_then_failed(tmp_path, store, capsys):
    from engine.match import load_ruleset

    write_rules(tmp_path / "rules", RULES)
    real = StatefulRules(load_ruleset([tmp_path / "rules"], destinations={}, webhooks=["asgardeo"]), store)
    good = [raw_event() for _ in range(20)]
    raising, unrecordable = raw_event(jti="raises"), raw_event(jti="unrecordable")
    for event in good[:10] + [raising, unrecordable] + good[10:]:
        store.ingest(event, 3600)
    now = [T0]
    processor, metrics = processor_for(tmp_path, store, clock=lambda: now[0],
                                       rules=_Rules(real, "raises", "unrecordable"))
    processor.run_once()
    assert all(store.get_event(e.jti).status == "processed" for e in good)
    assert len(store.list_jobs(limit=1000)) == 20
    for jti in ("raises", "unrecordable"):
        held = store.get_event(jti)
        assert (held.status, held.attempts) == ("pending", 1)
    assert processor.run_once() == 0  # not before its retry time
    for delay in RETRY_DELAYS:
        now[0] += delay
        assert processor.run_once() == 2
    for jti, reason in (("raises", "evaluation failed: RecursionError: maximum recursion depth exceeded \\ud800"),
                        ("unrecordable", "recording failed: StoreError: refused to store decisions: not valid JSON")):
        failed = store.get_event(jti)
        assert (failed.status, failed.attempts) == ("failed", len(RETRY_DELAYS) + 1)
        assert failed.decisions[0]["error"].startswith(reason)
    assert metrics.event_failures.labels("failed")._value.get() == 2
    assert metrics.event_failures.labels("retry")._value.get() == 2 * len(RETRY_DELAYS)
    assert store.stats().events == {"processed": 20, "failed": 2}
    config = basic_config(tmp_path, store_url=f"sqlite:///{tmp_path / 'idhooks.db'}")
    assert main(["events", "list", "--status", "failed", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "raises" in out and "unrecordable" in out and good[0].jti not in out
    assert "evaluation failed: RecursionError" in out


@pytest.mark.slow
def test_a_poison_event_among_50_good_ones_in_a_real_server(tmp_path, serve, http_peer: HttpPeer):
    config = basic_config(tmp_path, extra=f'destinations:\n  target: {{type: http, base_url: "{http_peer.url}"}}\n')
    (tmp_path / "rules" / "r.yaml").write_text(RULES.replace(
        '      - log: {message: "failed login for {{ username }}"}',
        '      - http: {to: target, path: "/hook", json: {jti: "{{ envelope.jti }}", count: "{{ event.count }}"}}'))
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")  # an old database may already hold such an event
    poison = raw_event("1e999")
    store.ingest(IncomingEvent(**{**poison.__dict__, "received_at": time.time(),
                                  "iat_ms": time.time() * 1000}), 3600)
    store.close()
    server = serve(config)
    sent = []
    for _ in range(50):
        event = sample_event()
        body, headers = signed(event)
        assert requests.post(server.url + "/webhooks/asgardeo", data=body, headers=headers,
                             timeout=10).status_code == 202
        sent.append(event["jti"])
    arrived = http_peer.wait_for(50, timeout=60)
    delivered = [r.json()["jti"] for r in arrived]
    assert sorted(delivered) == sorted(sent), server.log()  # all 50, none twice, not the poison
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    try:
        assert store.get_event(poison.jti).status == "failed"
    finally:
        store.close()
