"""Refused deliveries are quarantined (bounded) and can be re-verified after the secret is fixed; the same on
every store backend."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterator

import falcon.testing
import pytest

from engine.receive.app import create_app
from engine.cli import main
from engine.config.settings import load_config
from engine.store import open_store
from tests.conftest import SECRET, sample_event, signed
from tests.store_backends import backend_config, backend_params, drop_deployment, store_url
from tests.redisutil import unique_group


@pytest.fixture(params=backend_params())
def config_for(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Writes a config (with `extra` settings) on each store backend."""
    group, url = unique_group(), store_url(request, request.param)

    def write(extra: str = "") -> Path:
        return backend_config(request.param, tmp_path, url, group, extra=extra)

    yield write
    drop_deployment(request.param, url, group, tmp_path / "cleanup")


def make_client(config_path: Path):
    config = load_config(config_path)
    store = open_store(config.store)
    return falcon.testing.TestClient(create_app(config, store)), store


def test_a_wrong_secret_costs_no_event_once_fixed_and_reverified(tmp_path, capsys, config_for):
    config_path = config_for()
    (tmp_path / "secret").write_text("typo-in-the-secret")
    client, store = make_client(config_path)
    events = [sample_event() for _ in range(3)]
    for event in events:
        assert client.simulate_post("/webhooks/asgardeo", body=signed(event)[0],
                                    headers=signed(event)[1]).status_code == 401
    noise = signed(sample_event(), secret="attacker")
    client.simulate_post("/webhooks/asgardeo", body=noise[0], headers=noise[1])
    store.close()

    assert main(["quarantine", "list", "--config", str(config_path)]) == 0
    listing = capsys.readouterr().out
    assert listing.count("signature does not match") == 4

    (tmp_path / "secret").write_text(SECRET)  # the operator fixes the secret
    assert main(["quarantine", "reverify", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "3 of 4 ingested" in out and "still refused" in out

    store = open_store(load_config(config_path).store)
    assert sorted(e.jti for e in store.list_events()) == sorted(e["jti"] for e in events)
    assert all(e.status == "pending" for e in store.list_events())  # they will be processed like any event
    assert len(store.quarantine_list()) == 1
    entry_id = store.quarantine_list()[0].id
    store.close()
    assert main(["quarantine", "drop", entry_id, "--config", str(config_path)]) == 0
    assert main(["quarantine", "drop", entry_id, "--config", str(config_path)]) == 1


def test_the_quarantine_is_bounded_and_evictions_are_counted_and_logged(caplog, config_for):
    config_path = config_for("quarantine: {max_entries: 3, max_bytes: 1000000}")
    client, store = make_client(config_path)
    caplog.set_level(logging.WARNING, logger="idhooks")
    bodies = []
    for _ in range(5):
        body, headers = signed(sample_event(), secret="wrong")
        bodies.append(body)
        client.simulate_post("/webhooks/asgardeo", body=body, headers=headers)
    kept = store.quarantine_list()
    assert [e.body for e in kept] == bodies[2:]  # the oldest went first
    metrics = client.simulate_get("/metrics").text
    assert "idhooks_quarantine_evicted_total 2.0" in metrics
    assert "idhooks_quarantine_entries 3.0" in metrics
    assert "quarantine full" in caplog.text
    store.close()
