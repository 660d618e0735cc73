"""Intake refuses what it cannot store or render (issue 12, items 3/8/12 at intake): non-finite numbers, huge
integers and lone surrogates anywhere in a signed body get 400 with a reason through the refusal path (log
and metric), never a 500, and the next genuine event is accepted as usual."""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import sample_event, signed
from tests.hostile.support import App

PLACEHOLDER = "__HOSTILE__"


@pytest.fixture
def app(tmp_path):
    a = App(tmp_path)
    yield a
    a.store.close()


def body_with(raw_value: str, where: str = "value") -> bytes:
    """A genuine event whose body carries `raw_value` as raw JSON text: as a value, a key, or the jti."""
    event = sample_event()
    body = next(iter(event["events"].values()))
    if where == "key":
        body[PLACEHOLDER] = 1
        return json.dumps(event).replace(f'"{PLACEHOLDER}"', raw_value).encode()
    if where == "jti":
        event["jti"] = PLACEHOLDER
    else:
        body["user"] = {"claims": [{"uri": "x", "value": PLACEHOLDER}]}
    return json.dumps(event).replace(f'"{PLACEHOLDER}"', raw_value).encode()


@pytest.mark.parametrize("raw,where,reason", [
    ("1e999", "value", "number '1e999' is out of range"),
    ("-1e999", "value", "number '-1e999' is out of range"),
    ("NaN", "value", "NaN is not allowed"),
    ("Infinity", "value", "Infinity is not allowed"),
    ("-Infinity", "value", "-Infinity is not allowed"),
    ("9" * 4301, "value", "integer of 4301 digits: at most 64 are accepted"),
    ("-" + "9" * 65, "value", "integer of 65 digits"),
    ('"\\ud800"', "jti", "$.jti: a string holds a lone UTF-16 surrogate"),
    ('"x\\udfffy"', "value", "a string holds a lone UTF-16 surrogate"),
    ('"k\\ud800"', "key", "a key in $.events."),
    ('"\\ude00\\ud83d"', "value", "lone UTF-16 surrogate"),  # a pair in the wrong order is two lone halves
    ("[" * 40 + "]" * 40, "value", "nested deeper than 32 levels"),  # parses, but would exhaust recursion later
    ('{"a":' * 900 + "1" + "}" * 900, "value", "nested deeper than 32 levels"),
])
def test_a_signed_body_it_cannot_store_is_refused_with_400_and_a_reason(app, caplog, raw, where, reason):
    caplog.set_level(logging.WARNING, logger="idhooks")
    result = app.post(*signed(body_with(raw, where)))
    assert result.status_code == 400, result.text
    assert reason in result.json["error"]
    assert [r.status for r in caplog.records if r.getMessage() == "event refused" and reason in r.reason] == [400]
    assert app.metric('idhooks_deliveries_received_total{outcome="bad_payload",webhook="asgardeo"}') == 1
    assert app.store.list_events() == []
    genuine = sample_event()
    assert app.post(*signed(genuine)).status_code == 202
    assert app.store.get_event(genuine["jti"]).status == "pending"


@pytest.mark.parametrize("raw", ["1e308", "-" + "9" * 64, '"\\ud83d\\ude00 \\u00e9"', "0.1e-400",
                                 "[" * 20 + "]" * 20])
def test_large_but_finite_numbers_and_escaped_pairs_are_accepted(app, raw):
    body = body_with(raw)
    assert app.post(*signed(body)).status_code == 202
    stored = app.store.list_events()[0]
    assert stored.body == body
