"""orjson reads event bodies and writes what idhooks stores and sends (engine/verify/envelope.py,
engine/jsontext.py) only where it answers exactly as the standard library does. These properties hold the two
side by side on hostile input: the same bodies refused with the same reason, the same values decoded (an int
stays an int), the same values refused when written, and the same JSON value when both write one."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import jsontext
from engine.errors import PayloadError
from engine.match.processor import finite
from engine.verify import envelope as envelope_module
from engine.verify.envelope import parse_envelope
from tests.hostile.test_intake_property import RAW, STRINGS, VALUES, hostile_bodies
from tests.test_fuzz import EXPLORE

SAME = settings(max_examples=300, deadline=None, derandomize=not EXPLORE)


def typed(value: Any) -> Any:
    """`value` with every leaf tagged by its type, so that 1 and 1.0 (and True and 1) compare unequal."""
    if isinstance(value, dict):
        return {"dict": sorted((key, typed(item)) for key, item in value.items())}
    if isinstance(value, list):
        return ["list", *[typed(item) for item in value]]
    if isinstance(value, float):
        return ("float", repr(value))  # nan == nan is False; repr() compares NaN, -0.0 and 0.0 faithfully
    return (type(value).__name__, value)


NESTING = ("invalid JSON: nested too deeply", f"invalid JSON: nested deeper than {envelope_module.MAX_DEPTH} levels")
"""The two reasons for a body nested too deep: which one the standard decoder gives depends on how deep the
interpreter's stack already is when it runs out (orjson reads 1,024 levels and the depth check then refuses)."""


def outcome(body: bytes) -> Any:
    """What intake makes of `body`: the refusal's reason (too deep nesting: one reason), or the claims with
    their types."""
    try:
        return typed(parse_envelope(body).claims)
    except PayloadError as exc:
        return "refused: nested too deep" if str(exc) in NESTING else f"refused: {exc}"


def standard_outcome(body: bytes, monkeypatch: pytest.MonkeyPatch) -> Any:
    """outcome() with the standard library's decoder alone (the code before orjson)."""
    with monkeypatch.context() as patched:
        patched.setattr(envelope_module, "_fast_decode", lambda body: None)
        return outcome(body)


@SAME
@given(body=hostile_bodies())
def test_a_hostile_body_is_read_exactly_as_the_standard_library_reads_it(body: bytes) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert outcome(body) == standard_outcome(body, monkeypatch)


@SAME
@given(raw=RAW | st.sampled_from(["18446744073709551615", "-9223372036854775809", "9223372036854775807",
                                  "1234567890123456789", "12345678901234567890.5", '"12345678901234567890"',
                                  "1E400", "-0.0", "0.1e-999", '"\\ud83d\\ude00"', '"\\udc00"', "[]", "{}"]))
def test_a_raw_value_in_an_event_is_read_exactly_as_the_standard_library_reads_it(raw: str) -> None:
    body = ('{"iss": "https://api.asgardeo.io/t/acme", "jti": "j-1", "iat": 1700000000000, "events": '
            '{"https://schemas.identity.wso2.org/events/login/event-type/loginFailed": {"value": ' + raw + '}}}')
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert outcome(body.encode()) == standard_outcome(body.encode(), monkeypatch)


def test_an_integer_beyond_64_bits_stays_an_integer() -> None:
    body = (b'{"jti": "j-1", "iat": 1700000000000, "events": {"urn:x": {"big": 123456789012345678901234567890, '
            b'"neg": -9223372036854775809}}}')
    event = parse_envelope(body).events["urn:x"]
    assert event == {"big": 123456789012345678901234567890, "neg": -9223372036854775809}
    assert all(type(value) is int for value in event.values())


WRITABLE = VALUES | st.sampled_from([float("nan"), [1, float("inf")], {"a": {"b": -math.inf}}, {1: "int key"},
                                     {None: 1, True: 2}, 2**80, {"x": None}, "null", "\ud800", {"\udfff": 1},
                                     {1, 2}, b"bytes", ("tuple", 1)])


def standard(value: Any) -> tuple[str, Any]:
    try:
        return "written", json.loads(json.JSONEncoder(allow_nan=False).encode(value))
    except (ValueError, TypeError) as exc:
        return "refused", type(exc)


def ours(value: Any) -> tuple[str, Any]:
    try:
        return "written", json.loads(jsontext.dumps(value))
    except (ValueError, TypeError) as exc:
        return "refused", type(exc)


@SAME
@given(value=WRITABLE)
def test_strict_json_writes_and_refuses_exactly_what_the_standard_library_does(value: Any) -> None:
    expected, got = standard(value), ours(value)
    assert got[0] == expected[0]
    assert typed(got[1]) == typed(expected[1]) if got[0] == "written" else got[1] is expected[1]
    if got[0] == "written":
        assert jsontext.dumps_bytes(value).decode("utf-8") == jsontext.dumps(value)


@SAME
@given(value=WRITABLE | STRINGS)
def test_finite_turns_every_non_finite_float_into_text_and_leaves_the_rest(value: Any) -> None:
    fixed = finite(value)
    if standard(value)[1] is not TypeError:  # a set or bytes: no JSON type, finite() or not
        assert standard(fixed)[0] == "written"
    if jsontext.certainly_finite(value):
        assert fixed is value


def test_finite_names_what_it_replaced() -> None:
    assert finite({"a": [1.5, float("nan"), {"b": float("-inf")}], "c": "null"}) == \
        {"a": [1.5, "NaN", {"b": "-Infinity"}], "c": "null"}
