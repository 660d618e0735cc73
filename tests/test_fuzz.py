"""Property-based fuzzing of everything that reads untrusted input: the body parser, the signed intake and
the rule evaluation of the shipped rules. Whatever arrives, the answer is a deliberate status (never a 500),
a refused POST stores no event, and an accepted event is evaluated without an exception into jobs that
can be stored. The default run tries a few hundred inputs; the `slow` run (part of `make test`) thousands."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import falcon.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import catalog
from engine.runtime import Current
from engine.receive.app import create_app
from engine.config.settings import load_config
from engine.verify.envelope import parse_envelope
from engine.errors import PayloadError
from engine.metrics import Metrics
from engine.match.processor import Processor
from engine.match.loader import load_for_config
from engine.match.stateful.evaluator import StatefulRules
from engine.store.base import StoredEvent
from engine.store.sqlite import SQLiteStore
from tests.conftest import ROOT, basic_config, env_names, provide_secret_files, signed

# The same inputs on every run, so a red CI always means a change broke something; IDHOOKS_FUZZ_EXPLORE=1
# draws new ones (run it now and then, and keep what it finds as a plain test).
EXPLORE = bool(os.environ.get("IDHOOKS_FUZZ_EXPLORE"))
QUICK = settings(max_examples=150, deadline=None, derandomize=not EXPLORE,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
SOAK = settings(max_examples=3000, deadline=None, derandomize=not EXPLORE,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

JSON_LEAVES = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False,
                                                                                 allow_infinity=False) | st.text()
JSON = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner,
                                                                                            max_size=4),
                    max_leaves=20)
ALIASES = sorted(catalog.entries())


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and list indexes) into a JSON document, the root included."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, prefix + (index,))
    return found


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A real catalog sample (any event type) with a few values replaced by arbitrary JSON or removed: what
    a newer IS version, a buggy proxy or an attacker holding the secret could send."""
    event = copy.deepcopy(catalog.entries()[draw(st.sampled_from(ALIASES))].sample())
    event["jti"] = f"fuzz-{draw(st.uuids())}"
    for _ in range(draw(st.integers(0, 6))):
        paths = [p for p in _paths(event) if p]
        if not paths:  # everything was removed already
            break
        path = draw(st.sampled_from(paths))
        parent = event
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
    return event


class Intake:
    """The real app on a real SQLite file."""

    def __init__(self, folder: Path) -> None:
        self.store = SQLiteStore(folder / "var" / "idhooks.db")
        self.client = falcon.testing.TestClient(create_app(load_config(basic_config(folder)), self.store))

    def events(self) -> int:
        return sum(self.store.stats().events.values())


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    app = Intake(tmp_path)
    yield app
    app.store.close()


def check_signed_delivery(intake: Intake, body: bytes) -> None:
    before = intake.events()
    _, headers = signed(body)
    resp = intake.client.simulate_post("/webhooks/asgardeo", body=body, headers=headers)
    try:
        parse_envelope(body)
        expected = {202}
    except PayloadError:
        expected = {400}
    assert resp.status_code in expected, (body[:200], resp.text)
    assert set(resp.json) <= {"status", "jti", "error"}
    if resp.status_code == 202 and resp.json["status"] in ("accepted", "stale"):  # stale: kept, not processed
        assert intake.events() == before + 1
        assert intake.store.get_event(resp.json["jti"]).body == body  # the exact bytes, nothing rewritten
    else:
        assert intake.events() == before


# -- the parser ------------------------------------------------------------------------------------
@QUICK
@given(st.binary(max_size=2000) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_body_is_an_envelope_or_a_payload_error(body: bytes) -> None:
    try:
        envelope = parse_envelope(body)
    except PayloadError as exc:
        assert str(exc)  # a reason the sender can act on
        return
    assert isinstance(envelope.jti, str) and envelope.jti.strip()
    assert all(isinstance(uri, str) and isinstance(event, dict) for uri, event in envelope.events.items())


# -- signed intake ---------------------------------------------------------------------------------
@QUICK
@given(body=st.binary(max_size=2000) | mutated_events().map(lambda e: json.dumps(e).encode()))
def test_signed_input_is_202_or_400_and_only_a_202_stores(intake: Intake, body: bytes) -> None:
    check_signed_delivery(intake, body)


@QUICK
@given(body=st.binary(max_size=500), signature=st.text(max_size=100))
def test_a_wrong_or_malformed_signature_is_401_and_stores_nothing(intake: Intake, body: bytes,
                                                                  signature: str) -> None:
    before = intake.events()
    headers = {"Content-Type": "application/json", "X-Hub-Signature": signature.encode("utf-8", "replace")
               .decode("latin-1")}
    resp = intake.client.simulate_post("/webhooks/asgardeo", body=body, headers=headers)
    assert resp.status_code == 401, resp.text
    assert intake.events() == before


# -- rule evaluation -------------------------------------------------------------------------------
@pytest.fixture
def processor(tmp_path: Path) -> Iterator[Processor]:
    """The shipped config.yaml and rules/, evaluated as the live processor does (stateful state included)."""
    text = (ROOT / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text(provide_secret_files(text, tmp_path))
    (tmp_path / "rules").symlink_to(ROOT / "rules")
    config = load_config(tmp_path / "config.yaml", env={name: "x" for name in env_names(text)})
    store = SQLiteStore(tmp_path / "state.db")
    rules = StatefulRules(load_for_config(config), store)
    yield Processor(store, Current(rules), metrics=Metrics(), clock=time.time)
    store.close()


def check_evaluation(processor: Processor, event: dict[str, Any]) -> None:
    body = json.dumps(event).encode()
    try:
        envelope = parse_envelope(body)
    except PayloadError:
        return  # refused at intake: never evaluated
    stored = StoredEvent(jti=envelope.jti, webhook="asgardeo", iat_ms=envelope.iat_ms, received_at=time.time(),
                         uris=envelope.uris, body=body, status="pending")
    decisions, jobs = processor.evaluate(stored)
    json.dumps(decisions)  # decision records are stored as JSON
    for job in jobs:
        json.dumps(job.to_json())
        # the event's own key, or a stateful firing's (rule:group:start; one SET may carry every step of a sequence)
        assert job.key.startswith((envelope.jti + ":", job.rule + ":"))


@QUICK
@given(event=mutated_events())
def test_the_shipped_rules_evaluate_any_accepted_event(processor: Processor, event: dict[str, Any]) -> None:
    check_evaluation(processor, event)


@pytest.mark.slow
@SOAK
@given(event=mutated_events())
def test_soak_the_shipped_rules_evaluate_any_accepted_event(processor: Processor, event: dict[str, Any]) -> None:
    check_evaluation(processor, event)


@pytest.mark.slow
@SOAK
@given(body=st.binary(max_size=2000) | mutated_events().map(lambda e: json.dumps(e).encode()))
def test_soak_signed_input_is_202_or_400_and_only_a_202_stores(intake: Intake, body: bytes) -> None:
    check_signed_delivery(intake, body)
