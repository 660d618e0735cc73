"""WebSub verification of intent and hub notices (GET on a webhook path)."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
import pytest

from engine.receive.app import create_app
from engine.cli import main
from engine.config.settings import load_config
from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config

TOPIC = "acme.b5e0d3c2-7f1a-4c8e-9d2b-3a6f1e0c9b47.schema.wso2.v1.event.login"


@pytest.fixture
def env(tmp_path: Path):
    config = load_config(basic_config(tmp_path))
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    yield falcon.testing.TestClient(create_app(config, store, clock=lambda: 1_800_000_000.0)), store, tmp_path
    store.close()


def verify(client, **params):
    query = {f"hub.{k}": v for k, v in params.items()}
    return client.simulate_get("/webhooks/asgardeo", params=query)


def test_subscribe_echoes_the_challenge_exactly_as_text_plain(env):
    client, store, _ = env
    challenge = "d8f0 é ü+/=\u2603-challenge"
    result = verify(client, mode="subscribe", topic=TOPIC, challenge=challenge, lease_seconds="864000")
    assert result.status_code == 200
    assert result.headers["content-type"] == "text/plain"
    assert result.content == challenge.encode("utf-8")  # byte for byte, no trailing newline
    [record] = store.list_subscriptions()
    assert (record.mode, record.topic, record.lease_expires_at) == ("subscribe", TOPIC, 1_800_000_000.0 + 864000)


@pytest.mark.parametrize("lease", [None, "", "soon", "-5", "1e9"])
def test_lease_seconds_is_optional_and_garbage_is_ignored(env, lease):
    client, store, _ = env
    params = dict(mode="subscribe", topic=TOPIC, challenge="abc")
    if lease is not None:
        params["lease_seconds"] = lease
    result = verify(client, **params)
    assert (result.status_code, result.text) == (200, "abc")
    assert store.list_subscriptions()[0].lease_expires_at is None


def test_unsubscribe_without_lease_is_echoed(env):
    client, store, _ = env
    result = verify(client, mode="unsubscribe", topic=TOPIC, challenge="bye-123")
    assert (result.status_code, result.text) == (200, "bye-123")
    assert store.list_subscriptions()[0].mode == "unsubscribe"


def test_topic_not_agreed_is_exactly_404_without_echo_and_not_kept(env):
    client, store, _ = env
    result = verify(client, mode="subscribe", topic="globex.x.schema.wso2.v1.event.login", challenge="SECRET-ECHO")
    assert result.status_code == 404
    assert "SECRET-ECHO" not in result.text
    assert store.list_subscriptions() == []  # anyone can send these: only agreed topics are recorded


@pytest.mark.parametrize("params", [
    dict(topic=TOPIC, challenge="c1"),                      # no mode
    dict(mode="subscribe", challenge="c1"),                 # no topic
    dict(mode="subscribe", topic=TOPIC),                    # no challenge
    dict(mode="subscribe", topic=TOPIC, challenge=""),      # empty challenge
    dict(mode="publish", topic=TOPIC, challenge="c1"),      # unknown mode
])
def test_incomplete_or_unknown_verification_is_400_without_echo(env, params):
    client, _, _ = env
    result = verify(client, **params)
    assert result.status_code == 400
    assert "c1" not in result.text


@pytest.mark.parametrize("mode", ["denied", "hub-error"])
def test_hub_notices_get_200_and_are_recorded_and_shown(env, mode, capsys):
    client, store, tmp_path = env
    result = verify(client, mode=mode, topic=TOPIC, reason="subscription limit reached")
    assert result.status_code == 200
    [record] = store.list_subscriptions()
    assert (record.mode, record.reason) == (mode, "subscription limit reached")
    store.close()
    assert main(["subscriptions", "--config", str(tmp_path / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert mode in out and "subscription limit reached" in out and TOPIC in out


def test_subscriptions_flags_a_silent_webhook(env, capsys):
    _, store, tmp_path = env
    store.close()
    assert main(["subscriptions", "--config", str(tmp_path / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert "WARNING: webhook 'asgardeo' has accepted no event for over 1d (last: never)" in out
