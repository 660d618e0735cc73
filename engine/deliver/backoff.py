"""When to try a failed delivery again: exponential backoff with full jitter, bounded by a retry window.

Full jitter (a uniformly random wait between 0 and the exponential cap) spreads the retries of many jobs
that failed together, so a target coming back up is not hit by all of them at once. The window
(`retry_for`) is measured from the job's creation, so a job never retries for longer than configured
however its waits fell. Defaults come from `delivery:` in config.yaml; a destination's or a rule's
`retry: {retry_for, backoff_initial, backoff_max}` overrides any of the three.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from engine.config.durations import parse_duration
from engine.config.retry import RETRY_KEYS
from engine.config.settings import DeliveryConfig


@dataclass(frozen=True)
class RetryPolicy:
    retry_for: float
    initial: float
    maximum: float

    @classmethod
    def from_delivery(cls, delivery: DeliveryConfig) -> RetryPolicy:
        return cls(delivery.retry_for, delivery.backoff_initial, delivery.backoff_max)

    def override(self, node: Mapping[str, Any] | None) -> RetryPolicy:
        """This policy with the keys of a `retry:` mapping applied (validated at load by engine.config.retry)."""
        if not node:
            return self
        return replace(self, **{RETRY_KEYS[key]: parse_duration(value) for key, value in node.items() if key in RETRY_KEYS})

    def wait(self, failed_attempts: int, rng: Callable[[], float]) -> float:
        """Full jitter: uniform in [0, min(maximum, initial * 2**(failed_attempts-1))]."""
        cap: float = min(self.maximum, self.initial * 2.0 ** min(max(failed_attempts - 1, 0), 64))
        return rng() * cap

    def next_due(self, failed_attempts: int, created_at: float, now: float, rng: Callable[[], float],
                 retry_after: float | None = None) -> float | None:
        """When to try again after `failed_attempts` failures, or None once the retry window is spent.
        A server's Retry-After is a lower bound; the last try is made at the end of the window."""
        deadline = created_at + self.retry_for
        if now >= deadline:
            return None
        wait = max(self.wait(failed_attempts, rng), retry_after or 0.0)
        return min(now + wait, deadline)
