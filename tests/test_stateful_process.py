"""A real `idhooks serve` process restarted (kill -9) in the middle of a threshold window: the window
continues where it was, and the alert is sent exactly once."""

from __future__ import annotations

import time

import pytest
import requests

from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, free_port, sample_event, signed

RULE = """
rules:
  - id: brute-force-user
    event: login.loginFailed
    threshold: {count: 3, within: 10m, group_by: [claims.username]}
    suppress: {for: 30m}
    actions:
      - log: {message: "ALERT {{ count }} failed logins for {{ group[0] }} within {{ window }}"}
"""


def _processed(tmp_path, count: int, server, timeout: float = 20) -> None:
    """Wait (bounded) until `count` events were evaluated by the server."""
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and store.stats().events.get("processed", 0) < count:
            time.sleep(0.05)
        assert store.stats().events.get("processed", 0) == count, server.log()
    finally:
        store.close()


@pytest.mark.slow
def test_a_restart_in_the_middle_of_a_window_neither_resets_it_nor_fires_twice(tmp_path, serve):
    port = free_port()
    config = basic_config(tmp_path, port=port)
    (tmp_path / "rules" / "brute.yaml").write_text(RULE)

    def send(server) -> None:
        body, headers = signed(sample_event("login.loginFailed"))
        response = requests.post(server.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10)
        assert response.status_code == 202

    first = serve(config, port)
    send(first)
    send(first)
    _processed(tmp_path, 2, first)  # two failures counted in the window ...
    first.kill9()                   # ... when the process dies
    second = serve(config, port)
    send(second)
    _processed(tmp_path, 3, second)
    send(second)                    # a 4th failure starts a new window: no second alert
    _processed(tmp_path, 4, second)
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    jobs = store.list_jobs()
    store.close()
    alert = "ALERT 3 failed logins for jane.doe@example.com within 10m"
    assert [job.message for job in jobs] == [{"message": alert}], second.log()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and alert not in second.log():
        time.sleep(0.05)
    assert second.log().count(alert) == 1, second.log()
