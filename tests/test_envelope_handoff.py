"""Intake hands its parsed envelope to the processor (engine/verify/envelope.py RecentEnvelopes): a shortcut
that may never change what the processor sees."""

from __future__ import annotations

import json

from engine.verify.envelope import RecentEnvelopes, parse_envelope
from tests.conftest import sample_event


def body_of(jti: str | None = None) -> bytes:
    event = sample_event()
    if jti is not None:
        event["jti"] = jti
    return json.dumps(event).encode()


def test_the_envelope_intake_parsed_is_handed_over_once() -> None:
    recent = RecentEnvelopes()
    body = body_of()
    envelope = parse_envelope(body)
    recent.put(body, envelope)
    assert recent.take(envelope.jti, body) is envelope
    assert recent.take(envelope.jti, body) is None  # a retry parses afresh


def test_a_stored_body_that_differs_is_parsed_not_taken_from_the_hand_off() -> None:
    recent = RecentEnvelopes()
    body = body_of()
    envelope = parse_envelope(body)
    recent.put(body, envelope)
    other = body.replace(b'"iss"', b'"iss" ', 1)  # same jti, other bytes: e.g. another process's copy
    assert other != body
    parsed = recent.parse(envelope.jti, other)
    assert parsed is not envelope and parsed.claims == json.loads(other)


def test_the_hand_off_is_bounded_and_drops_the_oldest() -> None:
    recent = RecentEnvelopes(limit=3)
    bodies = [body_of(jti=f"jti-{n}") for n in range(5)]
    for body in bodies:
        recent.put(body, parse_envelope(body))
    assert recent.take("jti-0", bodies[0]) is None and recent.take("jti-1", bodies[1]) is None
    assert all(recent.take(f"jti-{n}", bodies[n]) is not None for n in (2, 3, 4))
