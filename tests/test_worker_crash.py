"""A real `idhooks serve` killed with SIGKILL (or stopped with SIGTERM) mid-delivery loses no job: after
the restart every job is delivered, and the ones in flight at the kill are sent again with the same
Idempotency-Key. SIGTERM stops claiming and gives up on the held sends after `shutdown_grace`."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from engine.store.base import NewJob
from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, free_port
from tests.peers import HttpPeer, http_peer  # noqa: F401 - fixture

JOBS = 20


def queue_jobs(db: Path, now: float) -> list[str]:
    """The jobs the processor would have created for 20 matched events."""
    store = SQLiteStore(db)
    jobs = [NewJob(key=f"jti-{i}:provision:0", destination="target",
                   payload={"type": "http", "rule": "provision", "jti": f"jti-{i}", "index": 0,
                            "fields": {"path": "/users", "json": {"n": i}}, "received_at": now})
            for i in range(JOBS)]
    store.complete_event("jti-0", [], jobs, now)
    store.close()
    return [job.key for job in jobs]


def job_statuses(db: Path) -> Counter:
    store = SQLiteStore(db)
    try:
        return Counter(job.status for job in store.list_jobs(limit=1000))
    finally:
        store.close()


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
    db = tmp_path / "var" / "idhooks.db"
    keys = queue_jobs(db, time.time())
    http_peer.hold.clear()  # the target is slow: it holds every request
    server = serve(config, port)
    assert http_peer.wait_for_arrivals(2) == 2  # two sends in flight (the per-destination limit)
    getattr(server, stop)()  # SIGKILL, or SIGTERM and wait for the exit
    assert server.proc.returncode == (-9 if stop == "kill9" else 0)
    assert job_statuses(db) == {"pending": JOBS}  # nothing acknowledged, nothing lost
    http_peer.hold.set()

    restarted = serve(config, port)
    deadline = time.monotonic() + 30
    while job_statuses(db) != {"done": JOBS} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job_statuses(db) == {"done": JOBS}, restarted.log()
    sent = Counter(r.headers["Idempotency-Key"] for r in http_peer.requests)
    assert set(sent) == set(keys)
    assert sum(sent.values()) == JOBS + 2  # only the two in flight at the kill went out twice
    assert all(count <= 2 for count in sent.values())
