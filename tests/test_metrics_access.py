"""/metrics: on the main port by default, behind a bearer token, or only on its own listen address."""

from __future__ import annotations

import falcon.testing
import pytest
import requests

from engine.receive.app import create_app
from engine.config.settings import load_config
from engine.errors import ConfigError
from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, free_port, sample_event, signed


def client_for(tmp_path, extra: str):
    config = load_config(basic_config(tmp_path, extra=extra), env={"METRICS_TOKEN": "scrape-token-77"})
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    return falcon.testing.TestClient(create_app(config, store)), store


def test_metrics_need_the_bearer_token_when_one_is_configured(tmp_path):
    client, store = client_for(tmp_path, 'metrics: {token: "${METRICS_TOKEN}"}')
    try:
        assert client.simulate_get("/metrics").status_code == 401
        assert client.simulate_get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = client.simulate_get("/metrics", headers={"Authorization": "Bearer scrape-token-77"})
        assert ok.status_code == 200 and "idhooks_deliveries_received_total" in ok.text
        assert "scrape-token-77" not in ok.text
    finally:
        store.close()


def test_a_bad_listen_address_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"metrics.listen: expected HOST:PORT, e.g. 127.0.0.1:9100"):
        load_config(basic_config(tmp_path, extra="metrics: {listen: nine-one-hundred}"))


def test_metrics_on_their_own_listen_address_only(tmp_path, serve):
    port, metrics_port = free_port(), free_port()
    config = basic_config(tmp_path, port=port, extra=f'metrics: {{listen: "127.0.0.1:{metrics_port}"}}')
    server = serve(config, port)
    body, headers = signed(sample_event())
    assert requests.post(server.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10).status_code == 202
    assert requests.get(server.url + "/metrics", timeout=5).status_code == 404
    scraped = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    assert scraped.status_code == 200
    assert 'idhooks_deliveries_received_total{outcome="accepted",webhook="asgardeo"} 1.0' in scraped.text


def test_received_events_are_counted_under_the_new_name_and_the_deprecated_alias(tmp_path):
    """Issue 11: 'delivery' names only outbound jobs; the inbound counter is idhooks_events_received_total, and
    idhooks_deliveries_received_total stays exported with the same values for one release."""
    client, store = client_for(tmp_path, "")
    try:
        body, headers = signed(sample_event())
        assert client.simulate_post("/webhooks/asgardeo", body=body, headers=headers).status_code == 202
        assert client.simulate_post("/webhooks/asgardeo", body=body, headers=headers).json["status"] == "duplicate"
        scraped = client.simulate_get("/metrics").text
        for name in ("idhooks_events_received_total", "idhooks_deliveries_received_total"):
            assert f'{name}{{outcome="accepted",webhook="asgardeo"}} 1.0' in scraped
            assert f'{name}{{outcome="duplicate",webhook="asgardeo"}} 1.0' in scraped
        assert "# HELP idhooks_deliveries_received_total Deprecated alias of idhooks_events_received_total" in scraped
    finally:
        store.close()
