"""A real `idhooks serve` process: every acknowledged event survives `kill -9`, and is processed after restart."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, free_port, sample_event, signed


def test_200_acknowledged_events_survive_kill_9_and_are_stored_once(tmp_path, serve):
    port = free_port()
    config = basic_config(tmp_path, port=port)
    server = serve(config, port)
    url = server.url + "/webhooks/asgardeo"
    events = [sample_event() for _ in range(200)]
    session = requests.Session()

    def send(event) -> int:
        body, headers = signed(event)
        return requests.post(url, data=body, headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, events))
    server.kill9()  # right after the last 2xx
    assert statuses == [202] * 200

    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    stored = store.list_events(limit=1000)
    store.close()
    assert sorted(e.jti for e in stored) == sorted(e["jti"] for e in events)

    restarted = serve(config, port)
    # re-sending after the restart is a duplicate, not a second copy
    body, headers = signed(events[0])
    assert session.post(url, data=body, headers=headers, timeout=10).json()["status"] == "duplicate"
    deadline = time.monotonic() + 20
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    try:
        while time.monotonic() < deadline and store.stats().events.get("pending", 0):
            time.sleep(0.05)
        assert store.stats().events == {"processed": 200}, restarted.log()
    finally:
        store.close()
