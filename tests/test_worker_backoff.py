"""Retry timing: exponential backoff with full jitter, Retry-After as a lower bound, the retry window."""

from __future__ import annotations

import pytest

from actions.httpresult import retry_after
from engine.config.retry import policy_problems
from engine.deliver.backoff import RetryPolicy
from engine.config.settings import DeliveryConfig

POLICY = RetryPolicy.from_delivery(DeliveryConfig())  # 24 h window, 5 s doubling up to 1 h


@pytest.mark.parametrize(("failures", "cap"), [(1, 5), (2, 10), (3, 20), (10, 2560), (11, 3600), (500, 3600)])
def test_full_jitter_spans_zero_to_the_exponential_cap(failures: int, cap: float) -> None:
    assert POLICY.wait(failures, lambda: 0.0) == 0
    assert POLICY.wait(failures, lambda: 0.5) == cap / 2
    assert POLICY.wait(failures, lambda: 1.0) == cap


def test_retry_after_is_a_lower_bound_and_the_window_ends_retries() -> None:
    assert POLICY.next_due(1, created_at=0, now=100, rng=lambda: 0.0, retry_after=30) == 130
    assert POLICY.next_due(1, created_at=0, now=100, rng=lambda: 1.0, retry_after=2) == 105
    assert POLICY.next_due(12, created_at=0, now=86_000, rng=lambda: 1.0) == 86_400  # last try at the end
    assert POLICY.next_due(13, created_at=0, now=86_400, rng=lambda: 1.0) is None


def test_overrides_apply_in_order() -> None:
    policy = POLICY.override({"retry_for": "1h", "backoff_initial": "1s"}).override({"backoff_max": "10s"})
    assert policy == RetryPolicy(retry_for=3600, initial=1, maximum=10)
    assert policy_problems({"retry_for": "ever", "max": 1}, "retry") == [
        "retry.retry_for: expected a duration like 30s, 10m, 1h or 7d, got 'ever'",
        "retry.max: unknown key; expected one of: retry_for, backoff_initial, backoff_max",
    ]
    assert policy_problems("1h", "retry") == ["retry: expected a mapping with retry_for, backoff_initial and/or "
                                              "backoff_max"]


def test_retry_after_header_forms() -> None:
    assert retry_after("120", now=0) == 120
    assert retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40) == 60
    assert retry_after("soon", now=0) is None
    assert retry_after(None, now=0) is None
