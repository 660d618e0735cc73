"""The class "one event never blocks another", as a property: whatever value a stored event holds in a field
the rules read (non-finite numbers, huge integers, lone surrogates, nesting, markup), that event is processed
or failed with a reason, its decision record is valid JSON, and the genuine event behind it is processed.
Events are stored directly, as an old database (from before intake refused such values) can hold them."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.match import load_ruleset
from engine.match.processor import Processor
from engine.match.stateful.evaluator import StatefulRules
from engine.metrics import Metrics
from engine.runtime import Current
from engine.store.base import IncomingEvent
from engine.store.sqlite import SQLiteStore
from tests.conftest import sample_event
from tests.hostile.test_poison_event import RULES, T0
from tests.rules_support import write_rules

CHECKS = settings(max_examples=80, deadline=None, derandomize=not os.environ.get("IDHOOKS_FUZZ_EXPLORE"),
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
LEAVES = (st.none() | st.booleans() | st.integers(-10**400, 10**400) | st.floats()
          | st.text(alphabet=st.characters(codec=None), max_size=50)
          | st.sampled_from(["\ud800", "a\udfffb", "<script>", "a" * 5000 + "!", "\r\nBcc: x@example.com"]))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=4), max_leaves=12)
FIELDS = st.sampled_from(["count", "application", "user", "initiatorType", "action", "reason", "tenant"])


@pytest.fixture(scope="module")
def processor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Processor, SQLiteStore, Path]]:
    folder = tmp_path_factory.mktemp("isolation")
    write_rules(folder / "rules", RULES)
    store = SQLiteStore(folder / "idhooks.db")
    rules = StatefulRules(load_ruleset([folder / "rules"], destinations={}, webhooks=["asgardeo"]), store)
    yield Processor(store, Current(rules), metrics=Metrics(), clock=lambda: T0), store, folder / "idhooks.db"
    store.close()


def stored(body: bytes, jti: str) -> IncomingEvent:
    return IncomingEvent(jti=jti, webhook="asgardeo", iat_ms=T0 * 1000, received_at=T0,
                         uris=("https://schemas.identity.wso2.org/events/login/event-type/loginFailed",), body=body)


def odd_body(field: str, value: Any, jti: str) -> bytes:
    event = sample_event()
    event["jti"], event["iat"] = jti, int(T0 * 1000)
    next(iter(event["events"].values()))[field] = value
    return json.dumps(event).encode()  # NaN/Infinity as JSON tokens, surrogates as \\udXXX escapes


@CHECKS
@given(field=FIELDS, value=VALUES)
def test_any_stored_value_is_processed_or_failed_and_never_blocks_the_next(processor, field, value):
    runner, store, db = processor
    odd, good = str(uuid.uuid4()), str(uuid.uuid4())
    store.ingest(stored(odd_body(field, value, odd), odd), 3600)
    store.ingest(stored(odd_body("count", 1, good), good), 3600)
    runner.run_once()
    assert store.get_event(good).status == "processed"
    held = store.get_event(odd)
    assert held.status in ("processed", "failed") or (held.status == "pending" and held.attempts == 1)
    with sqlite3.connect(db) as conn:
        decisions = conn.execute("SELECT decisions FROM events WHERE jti IN (?, ?) AND decisions IS NOT NULL",
                                 (odd, good)).fetchall()
        assert all(conn.execute("SELECT json_valid(?)", row).fetchone() == (1,) for row in decisions)
