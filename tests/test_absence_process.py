"""Absence timers across real `idhooks serve` processes sharing one store (SQLite file or Redis): a timer
started by a process that is then killed with SIGKILL is fired by the survivor, and when two processes tick
over the same due timers each timer fires exactly once; a sequence goes on after its process was killed."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from engine.store import open_store
from engine.config.settings import load_config
from tests.conftest import basic_config, free_port, sample_event, signed
from tests.redisutil import delete_group, open_redis_store, redis_config, unique_group

RULE = """
rules:
  - id: registered-never-signed-in
    event: registration.registrationSuccess
    absence: {expect: {event: login.loginSuccess}, group_by: [user_id], within: 2s}
    actions:
      - log: {message: "NEVER SIGNED IN {{ user_id }}"}
"""
FIRED = "absence timer expired: firing"


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A config whose store two processes share."""
    if request.param == "sqlite":
        config = basic_config(tmp_path)
    else:
        url, group = request.getfixturevalue("redis_available"), unique_group()
        config = redis_config(tmp_path, url, group, port=8080)
    (tmp_path / "rules" / "absence.yaml").write_text(RULE)
    yield config
    if request.param == "redis":
        store = open_redis_store(url, tmp_path / "cleanup", group)
        delete_group(store)
        store.close()


def _register(server: Any, user_id: str) -> None:
    body, headers = signed(sample_event("registration.registrationSuccess", user={"id": user_id}))
    response = requests.post(server.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10)
    assert response.status_code == 202


def _until(check: Callable[[], bool], timeout: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not check():
        time.sleep(0.1)
    assert check(), why()


def _stats(config: Path) -> tuple[int, list[str]]:
    store = open_store(load_config(config).store)
    try:
        return store.stats().events.get("processed", 0), sorted(job.message["message"] for job in store.list_jobs())
    finally:
        store.close()


@pytest.mark.slow
def test_a_timer_started_by_a_killed_process_is_fired_by_the_survivor(project: Path, serve) -> None:
    starter, survivor = serve(project, free_port()), serve(project, free_port())
    _register(starter, "user-1")
    _until(lambda: _stats(project)[0] == 1, 20, starter.log)   # the timer is in the store ...
    starter.kill9()                                            # ... and its process is gone
    _until(lambda: _stats(project)[1] == ["NEVER SIGNED IN user-1"], 30, survivor.log)
    _until(lambda: "NEVER SIGNED IN user-1" in survivor.log(), 20, survivor.log)   # delivered by the survivor
    assert survivor.log().count(FIRED) == 1 and starter.log().count(FIRED) == 0


@pytest.mark.slow
def test_two_processes_ticking_over_the_same_timers_fire_each_once(project: Path, serve) -> None:
    first, second = serve(project, free_port()), serve(project, free_port())
    users = [f"user-{i}" for i in range(40)]
    for i, user in enumerate(users):
        _register(first if i % 2 else second, user)
    expected = sorted(f"NEVER SIGNED IN {user}" for user in users)
    _until(lambda: _stats(project)[1] == expected, 40, lambda: first.log() + second.log())
    time.sleep(12)  # one more tick of each process: nothing fires again
    logs = first.log() + second.log()
    assert logs.count(FIRED) == len(users), logs
    assert _stats(project)[1] == expected
    delivered = {user: len(re.findall(rf"NEVER SIGNED IN {user}\b", logs)) for user in users}
    assert delivered == {user: 1 for user in users}, logs


SEQUENCE = """
rules:
  - id: takeover-after-failures
    sequence:
      group_by: [claims.username]
      within: 15m
      steps: [{event: login.loginFailed, count: 2}, {event: login.loginSuccess}]
    actions:
      - log: {message: "TAKEOVER {{ group[0] }} after {{ steps[0].count }} failures"}
"""


@pytest.mark.slow
def test_a_restart_in_the_middle_of_a_sequence_continues_it(project: Path, serve) -> None:
    (project.parent / "rules" / "absence.yaml").write_text(SEQUENCE)
    port = free_port()
    first = serve(project, port)
    for _ in range(2):
        body, headers = signed(sample_event("login.loginFailed"))
        assert requests.post(first.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10).status_code == 202
    _until(lambda: _stats(project)[0] == 2, 20, first.log)
    first.kill9()
    second = serve(project, port)
    body, headers = signed(sample_event("login.loginSuccess"))
    assert requests.post(second.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10).status_code == 202
    _until(lambda: _stats(project)[1] == ["TAKEOVER jane.doe@example.com after 2 failures"], 20, second.log)
