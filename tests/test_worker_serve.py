"""`idhooks serve` validates every destination before it binds, a reload keeps the running actions when
the new destinations are wrong, and an event travels the whole path to a target."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import falcon.testing
import pytest

from engine.config.settings import load_config
from engine.server import Service
from engine.store.sqlite import SQLiteStore
from tests.conftest import ROOT, basic_config, sample_event, signed
from tests.peers import HttpPeer, http_peer  # noqa: F401 - fixture


def test_serve_refuses_to_start_with_a_bad_destination(tmp_path: Path) -> None:
    config = basic_config(tmp_path, extra="destinations:\n  hook: {type: http, base_url: \"ftp://x\", timout: 3}\n")
    result = subprocess.run([sys.executable, "-m", "engine", "serve", "--config", str(config)], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1
    assert result.stderr == (
        "idhooks: configuration error:\n"
        f"{config}:11: destinations.hook.timout: unknown key (did you mean 'timeout'?); expected one of: base_url, "
        "allowed_hosts, headers, timeout, connect_timeout, max_response_bytes, ca_file, proxy, verify, type, retry\n"
        f"{config}:11: destinations.hook.base_url: expected an absolute http:// or https:// URL\n")


def test_reload_with_a_bad_destination_keeps_the_running_actions(tmp_path: Path) -> None:
    config_path = basic_config(tmp_path, extra="destinations:\n  hook: {type: http, base_url: \"http://127.0.0.1:9\"}\n")
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    service = Service(load_config(config_path), store)
    try:
        running = service.actions.get()
        config_path.write_text(config_path.read_text().replace("base_url", "base_ur1"))
        assert service.reload() is False
        assert service.actions.get() is running
        assert service.reload_errors[0].endswith("destinations.hook.base_ur1: unknown key (did you mean 'base_url'?); "
                                                 "expected one of: base_url, allowed_hosts, headers, timeout, "
                                                 "connect_timeout, max_response_bytes, ca_file, proxy, verify, "
                                                 "type, retry")
    finally:
        store.close()


def test_reload_applies_delivery_settings_and_names_those_needing_a_restart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config_path = basic_config(tmp_path, extra="delivery: {workers: 2, lease: 30s}\n")
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    service = Service(load_config(config_path), store)
    try:
        text = config_path.read_text()
        text = text.replace("workers: 2, lease: 30s", "workers: 5, lease: 2m")
        text = text.replace('store: {url: "sqlite:///var/idhooks.db"}',
                            'store: {url: "sqlite:///var/other.db", retention: 60d}')
        config_path.write_text(text)
        caplog.set_level(logging.INFO, logger="idhooks")
        assert service.reload() is True
        assert (service.worker.delivery.workers, service.worker.delivery.lease) == (5, 120.0)
        restart = [r.setting for r in caplog.records if r.getMessage().startswith("changed setting")]
        assert restart == ["store.url"]  # retention applies at the next prune, without a restart
    finally:
        store.close()


def test_event_data_with_quotes_newlines_and_unicode_reaches_the_target_as_valid_json(
        tmp_path: Path, http_peer: HttpPeer) -> None:
    """The whole path in one process: signed POST -> store -> rules -> job -> worker -> target."""
    config_path = basic_config(tmp_path, extra=f'destinations:\n  target: {{type: http, base_url: "{http_peer.url}"}}\n')
    (tmp_path / "rules" / "provision.yaml").write_text("""
rules:
  - id: provision
    event: login.loginFailed
    actions:
      - http: {to: target, path: /users, json: {userName: "{{ username }}", note: 'said "{{ username }}"', n: 1}}
""")
    name = 'O\'Brien "admin"\r\nX-Injected: 1 \u00e9\u4e2d\U0001F600 </script>\\'
    event = sample_event()
    event["events"][next(iter(event["events"]))]["user"]["claims"][0]["value"] = name
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    service = Service(load_config(config_path), store)
    try:
        body, headers = signed(event)
        assert falcon.testing.TestClient(service.app).simulate_post(
            "/webhooks/asgardeo", body=body, headers=headers).status_code == 202
        assert service.processor.run_once() == 1
        assert service.worker.run_once() == 1
    finally:
        store.close()
    [request] = http_peer.requests
    assert json.loads(request.body) == {"userName": name, "note": f'said "{name}"', "n": 1}
    assert request.headers["Idempotency-Key"] == f"{event['jti']}:provision:0"
    assert "X-Injected" not in request.headers
