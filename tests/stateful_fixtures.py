"""The `state_store` fixture: every stateful test runs against every store backend (tests/store_backends.py)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from engine.match.stateful.decide import Observation
from tests.store_backends import backend_params, open_backend

T0 = 1_700_000_000.0
"""An arbitrary epoch second; every test passes its own times (no wall clock)."""


@pytest.fixture(params=backend_params())
def state_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Every store backend of tests/store_backends.py."""
    with open_backend(request.param, request, tmp_path) as store:
        yield store


def seen(time: float, *, group: tuple = ("alice",), distinct: Any = None, jti: str | None = None) -> Observation:
    """A matching event at event time T0 + `time` seconds."""
    jti = jti or uuid.uuid4().hex
    return Observation(jti=jti, time=T0 + time, group=group, suppress_group=group, distinct=distinct,
                       item={"jti": jti, "at": time})
