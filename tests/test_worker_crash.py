"""A real `idhooks serve` killed with SIGKILL (or stopped with SIGTERM) mid-delivery loses no job: events
POSTed and matched by a rule are all delivered after the restart, and the ones in flight at the kill are
sent again with the same Idempotency-Key. SIGTERM stops claiming and gives up on the held sends after
`shutdown_grace`."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, free_port, sample_event, signed
from tests.peers import HttpPeer, http_peer  # noqa: F401 - fixture

EVENTS = 20
RULE = """
rules:
  - id: provision
    event: login.loginFailed
    actions:
      - http: {to: target, method: POST, path: /users, json: {user: "{{ username }}"}}
"""


def job_statuses(db: Path) -> Counter:
    store = SQLiteStore(db)
    try:
        return Counter(job.status for job in store.list_jobs(limit=1000))
    finally:
        store.close()


def wait_for_statuses(db: Path, expected: Counter, timeout: float = 30) -> Counter:
    deadline = time.monotonic() + timeout
    while (found := job_statuses(db)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["kill9", "stop"])
def test_killed_mid_delivery_then_restart_delivers_every_job(tmp_path: Path, serve, http_peer: HttpPeer,
                                                             stop: str) -> None:
    port = free_port()
    config = basic_config(tmp_path, port=port, extra=f"""
destinations:
  target: {{type: http, base_url: "{http_peer.url}", timeout: 30}}
delivery: {{workers: 4, per_destination_concurrency: 2, lease: 10m, shutdown_grace: 1s}}
""")
    (tmp_path / "rules" / "provision.yaml").write_text(RULE)
    db = tmp_path / "var" / "idhooks.db"
    http_peer.hold.clear()  # the target is slow: it holds every request
    server = serve(config, port)
    events = [sample_event() for _ in range(EVENTS)]
    for event in events:
        body, headers = signed(event)
        assert requests.post(server.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10).status_code == 202
    assert wait_for_statuses(db, Counter(pending=EVENTS)) == {"pending": EVENTS}, server.log()
    assert http_peer.wait_for_arrivals(2) == 2  # two sends in flight (the per-destination limit)
    getattr(server, stop)()  # SIGKILL, or SIGTERM and wait for the exit
    assert server.proc.returncode == (-9 if stop == "kill9" else 0)
    assert job_statuses(db) == {"pending": EVENTS}  # nothing acknowledged, nothing lost
    http_peer.hold.set()

    restarted = serve(config, port)
    assert wait_for_statuses(db, Counter(done=EVENTS)) == {"done": EVENTS}, restarted.log()
    sent = Counter(r.headers["Idempotency-Key"] for r in http_peer.requests)
    assert set(sent) == {f"{event['jti']}:provision:0" for event in events}
    assert sum(sent.values()) == EVENTS + 2  # only the two in flight at the stop went out twice
    assert all(count <= 2 for count in sent.values())
