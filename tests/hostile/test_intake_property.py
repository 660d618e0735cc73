"""The property behind issue 12's intake items: any value, in any field of a signed event, either gets a 400
that stores nothing, or a 202 after which the event is processed by the shipped rules on the real store
without holding up the genuine event sent next. Values are what an attacker holding the secret would try:
non-finite numbers, huge integers, lone surrogates, deep nesting, markup, CR/LF, template syntax."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import catalog
from engine.config.settings import load_config
from engine.match.loader import load_for_config
from engine.match.processor import Processor
from engine.match.stateful.evaluator import StatefulRules
from engine.metrics import Metrics
from engine.runtime import Current
from tests.conftest import ROOT, env_names, provide_secret_files, sample_event, signed
from tests.hostile.support import App
from tests.test_fuzz import EXPLORE

PROPERTY = settings(max_examples=120, deadline=None, derandomize=not EXPLORE,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

RAW = st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "9" * 4301, "9" * 400, "-" + "9" * 65,
                       "1e308", "-0", "4.9e-324", "123456789012345678901234567890"]) | \
    st.integers(30, 3000).map(lambda depth: "[" * depth + "]" * depth)
"""Raw JSON text put in place of a value (json.dumps cannot write most of these)."""
ANY_CHARACTER = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
STRINGS = st.text(ANY_CHARACTER, max_size=40) | st.sampled_from([
    "\ud800", "a\udfffb", "\ude00\ud83d", "<!channel> <https://evil.example|reset>", "<script>alert(1)</script>",
    "x\r\nBcc: victim@example.com", "{{ 7 * 7 }}{% raw %}", "${HOOK_SECRET}", "abc?admin=1&x=", "%252e%252e/x",
    "\x00\x1b[2J", "A" * 5000])
LEAVES = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | STRINGS
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(STRINGS, inner, max_size=3),
                      max_leaves=8)
ALIASES = sorted(catalog.entries())


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, prefix + (index,))
    return found


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    """A fresh catalog sample with one to three fields (any key: claims, event fields, nested ones) set to a
    hostile value, or renamed to a hostile key."""
    event = sample_event(draw(st.sampled_from(ALIASES)))
    raws: dict[str, str] = {}
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(event)))
        parent = event
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.integers(0, 4)) == 0:
            parent[draw(STRINGS)] = parent.pop(path[-1])
        elif draw(st.booleans()):
            marker = f"__raw{len(raws)}__"
            raws[f'"{marker}"'] = draw(RAW)
            parent[path[-1]] = marker
        else:
            parent[path[-1]] = copy.deepcopy(draw(VALUES))
    text = json.dumps(event)  # ensure_ascii: lone surrogates are written as \\ud800 escapes, as an attacker would
    for marker, raw in raws.items():
        text = text.replace(marker, raw)
    return text.encode()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[App, Processor]]:
    """The real app and the live processor with the shipped rules, on one SQLite file."""
    (tmp_path / "app").mkdir()
    app = App(tmp_path / "app")
    text = (ROOT / "config.yaml").read_text()
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "config.yaml").write_text(provide_secret_files(text, shipped))
    (shipped / "rules").symlink_to(ROOT / "rules")
    config = load_config(shipped / "config.yaml", env={name: "x" for name in env_names(text)})
    rules = StatefulRules(load_for_config(config), app.store)
    yield app, Processor(app.store, Current(rules), metrics=Metrics(), clock=time.time)
    app.store.close()


@PROPERTY
@given(body=hostile_bodies())
def test_any_value_in_any_field_is_refused_or_processed_without_blocking_the_next(live, body: bytes) -> None:
    app, processor = live
    before = len(app.store.list_events(limit=10_000))
    result = app.post(*signed(body))
    assert result.status_code in (202, 400), result.text
    if result.status_code == 400:
        assert result.json["error"] and len(app.store.list_events(limit=10_000)) == before
    genuine = sample_event()
    assert app.post(*signed(genuine)).json["status"] == "accepted"
    for _ in range(5):
        if processor.run_once() == 0:
            break
    assert app.store.get_event(genuine["jti"]).status == "processed"
    if result.status_code == 202 and result.json["status"] == "accepted":
        assert app.store.get_event(result.json["jti"]).status != "pending"


@pytest.mark.slow
@settings(PROPERTY, max_examples=400)
@given(body=hostile_bodies())
def test_soak_any_value_in_any_field_is_refused_or_processed(live, body: bytes) -> None:
    test_any_value_in_any_field_is_refused_or_processed_without_blocking_the_next.hypothesis.inner_test(live, body)
