"""Signed event intake (POST): verification, media type, size, payload checks, de-duplication, durability."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import falcon.testing
import pytest

from engine.receive.app import create_app
from engine.config.settings import load_config
from engine.store.sqlite import SQLiteStore
from tests.conftest import SECRET, basic_config, sample_event, signed, wire_vector, write_config

HUB_SIG = "sha256=d5f4be6103bf330f97ad10c0f257f5e480821279e28f52e810c150f14760d8ad"
IS_SIG = "sha256=ce158fda236cb42d138e1ac01afb2fb702bb84df8697e2c815a0a53adc78ed72"
WIRE_JTI = "c6a2e9f1-0b7d-4e3a-8f5c-1d9b2a7e4c60"


class Env:
    def __init__(self, tmp_path: Path, config_path: Path, now: float | None = None) -> None:
        self.tmp_path = tmp_path
        self.config = load_config(config_path)
        self.store = SQLiteStore(tmp_path / "var" / "idhooks.db")
        self.now = now or time.time()
        self.client = falcon.testing.TestClient(create_app(self.config, self.store, clock=lambda: self.now))

    def post(self, body: bytes, headers: dict[str, str], path: str = "/webhooks/asgardeo"):
        return self.client.simulate_post(path, body=body, headers=headers)


@pytest.fixture
def env(tmp_path: Path):
    e = Env(tmp_path, basic_config(tmp_path))
    yield e
    e.store.close()


@pytest.fixture
def wire_env(tmp_path: Path):
    """The shared wire vectors are signed with 'my-webhook-secret' and dated 2026-01-05."""
    (tmp_path / "rules").mkdir()
    path = write_config(tmp_path, """
webhooks:
  - {name: asgardeo, path: /webhooks/asgardeo, secret: "${WIRE_SECRET}"}
rules: {paths: [rules/]}
""")
    config_env = {"WIRE_SECRET": "my-webhook-secret"}
    import os
    os.environ.update(config_env)
    try:
        e = Env(tmp_path, path, now=1767604500.0)
    finally:
        del os.environ["WIRE_SECRET"]
    yield e
    e.store.close()


@pytest.mark.parametrize("vector,header,value", [
    ("login.loginFailed.hub.body", "X-Hub-Signature", HUB_SIG),
    ("login.loginFailed.is-http.body", "x-wso2-event-signature", IS_SIG),
    ("login.loginFailed.hub.body", "X-Hub-Signature", HUB_SIG.upper().replace("SHA256", "sha256")),
])
def test_byte_exact_wire_vectors_verify_and_are_stored(wire_env, vector, header, value):
    body = wire_vector(vector)
    result = wire_env.post(body, {"Content-Type": "application/json", header: value})
    assert result.status_code == 202, result.text
    assert result.json == {"status": "accepted", "jti": WIRE_JTI}
    stored = wire_env.store.get_event(WIRE_JTI)
    assert stored.body == body and stored.status == "pending" and stored.webhook == "asgardeo"


def test_a_reserialised_body_no_longer_verifies(wire_env):
    body = wire_vector("login.loginFailed.hub.body")
    compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
    result = wire_env.post(compact, {"Content-Type": "application/json", "X-Hub-Signature": HUB_SIG})
    assert result.status_code == 401
    assert wire_env.store.get_event(WIRE_JTI) is None


@pytest.mark.parametrize("algorithm", ["sha384", "sha512"])
def test_sha384_and_sha512_are_truly_verified(env, algorithm):
    body, headers = signed(sample_event(), algorithm=algorithm)
    assert env.post(body, headers).status_code == 202
    tampered = body.replace(b"Customer Portal", b"Customer Portai")
    assert env.post(tampered, headers).status_code == 401


@pytest.mark.parametrize("value,reason", [
    (None, "missing signature"),
    ("sha256=zz", "malformed signature"),
    ("sha256=abcd", "malformed signature"),
    ("d5f4be6103bf330f97ad10c0f257f5e480821279e28f52e810c150f14760d8ad", "malformed signature"),
    ("sha1=" + "a" * 40, "unsupported signature algorithm 'sha1'"),
    ("md5=" + "a" * 32, "unsupported signature algorithm 'md5'"),
    ("sha256=" + "0" * 64, "signature does not match"),
])
def test_missing_malformed_or_wrong_signatures_are_401_and_store_nothing(env, value, reason):
    event = sample_event()
    body, headers = signed(event)
    del headers["X-Hub-Signature"]
    if value is not None:
        headers["X-Hub-Signature"] = value
    result = env.post(body, headers)
    assert result.status_code == 401
    assert reason in result.json["error"]
    assert SECRET not in result.text
    assert env.store.get_event(event["jti"]) is None


def test_the_401_reason_never_contains_the_expected_digest(env):
    body, good = signed(sample_event())
    result = env.post(body, {**good, "X-Hub-Signature": "sha256=" + "1" * 64})
    assert good["X-Hub-Signature"].split("=")[1] not in result.text


def test_secret_rotation_accepts_new_and_old(tmp_path):
    (tmp_path / "rules").mkdir()
    path = write_config(tmp_path, """
webhooks:
  - {name: asgardeo, path: /webhooks/asgardeo, secrets: ["new-secret-1", "old-secret-0"]}
rules: {paths: [rules/]}
""")
    e = Env(tmp_path, path)
    for secret in ("new-secret-1", "old-secret-0"):
        assert e.post(*signed(sample_event(), secret=secret)).status_code == 202
    assert e.post(*signed(sample_event(), secret="older-secret")).status_code == 401
    e.store.close()


def test_body_over_max_body_bytes_is_413(tmp_path):
    e = Env(tmp_path, basic_config(tmp_path).parent / "config.yaml")
    e.store.close()
    text = (tmp_path / "config.yaml").read_text().replace("max_body_bytes: 1048576", "max_body_bytes: 2000")
    (tmp_path / "config.yaml").write_text(text)
    e = Env(tmp_path, tmp_path / "config.yaml")
    event = sample_event()
    event["padding"] = "x" * 3000
    result = e.post(*signed(event))
    assert result.status_code == 413
    assert "max_body_bytes (2000)" in result.json["error"]
    assert e.store.get_event(event["jti"]) is None
    e.store.close()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "", "application/jsonx"])
def test_not_json_media_is_415(env, content_type):
    body, headers = signed(sample_event())
    headers["Content-Type"] = content_type
    assert env.post(body, headers).status_code == 415


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;v=1"])
def test_json_media_type_parameters_and_case_are_ignored(env, content_type):
    body, headers = signed(sample_event())
    headers["Content-Type"] = content_type
    assert env.post(body, headers).status_code == 202


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(env, method):
    assert env.client.simulate_request(method, "/webhooks/asgardeo").status_code == 405


def test_unknown_path_is_404(env):
    assert env.post(*signed(sample_event()), path="/webhooks/other").status_code == 404


BAD_PAYLOADS = [
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"jti": "a", "iat": NaN, "events": {}}', "NaN is not allowed"),
    (b'{"jti": "a", "iat": Infinity, "events": {}}', "Infinity is not allowed"),
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"iat": 1, "events": {"u": {}}}', "missing or empty 'jti'"),
    (b'{"jti": 7, "iat": 1, "events": {"u": {}}}', "missing or empty 'jti'"),
    (b'{"jti": "a\\u0000b", "iat": 1, "events": {"u": {}}}', "'jti' contains a NUL character"),
    (b'{"jti": "a", "iat": "1767604498120", "events": {"u": {}}}', "non-numeric 'iat'"),
    (b'{"jti": "a", "iat": true, "events": {"u": {}}}', "non-numeric 'iat'"),
    (b'{"jti": "a", "iat": 253402300800000, "events": {"u": {}}}', "'iat' 253402300800000 is not a time"),
    (b'{"jti": "a", "iat": -1, "events": {"u": {}}}', "'iat' -1 is not a time"),
    (b'{"jti": "a", "iat": 1, "events": []}', "missing 'events'"),
    (b'{"jti": "a", "iat": 1, "events": {"u": "x"}}', "expected an object as the event body"),
    (b"[" * 10000 + b"]" * 10000, "nested too deeply"),
    (b'{"a":' * 10000 + b"1" + b"}" * 10000, "nested too deeply"),
]


@pytest.mark.parametrize("body,reason", BAD_PAYLOADS, ids=[r for _, r in BAD_PAYLOADS])
def test_bad_payloads_after_a_valid_signature_are_400_with_a_reason(env, body, reason):
    result = env.post(*signed(body))
    assert result.status_code == 400
    assert reason in result.json["error"]
    assert env.store.stats().events == {}


def test_unknown_claims_and_unknown_event_uris_are_accepted_and_stored(env):
    event = sample_event()
    event["txn"] = "extra-claim"
    event["events"]["https://example.com/events/custom/v9"] = {"anything": [1, {"nested": True}]}
    result = env.post(*signed(event))
    assert result.status_code == 202
    assert "https://example.com/events/custom/v9" in env.store.get_event(event["jti"]).uris


def test_a_repeated_jti_is_acknowledged_and_stored_once(env):
    body, headers = signed(sample_event())
    first, second = env.post(body, headers), env.post(body, headers)
    assert (first.status_code, second.status_code) == (202, 202)
    assert (first.json["status"], second.json["status"]) == ("accepted", "duplicate")
    assert env.store.stats().events == {"pending": 1}


def test_concurrent_copies_of_one_jti_are_stored_once(env):
    body, headers = signed(sample_event())
    results: list[int] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        results.append(env.post(body, headers).json["status"])

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["accepted"] + ["duplicate"] * 7
    assert env.store.stats().events == {"pending": 1}


def test_an_event_older_than_the_dedup_window_is_acknowledged_as_stale_and_not_evaluated(env):
    event = sample_event()
    event["iat"] = int((env.now - 8 * 86400) * 1000)
    result = env.post(*signed(event))
    assert (result.status_code, result.json["status"]) == (202, "stale")
    assert env.store.get_event(event["jti"]).status == "stale"
    assert env.store.claim_events("t", 60, 10, env.now) == []


def test_a_store_that_cannot_commit_answers_503(env):
    env.store.close()
    result = env.post(*signed(sample_event()))
    assert result.status_code == 503
    assert "retry" in result.json["error"]


def test_health_and_readiness(env):
    assert env.client.simulate_get("/healthz").status_code == 200
    ready = env.client.simulate_get("/readyz")
    assert ready.status_code == 200 and ready.json["store"] == "ok"
    env.store.close()
    assert env.client.simulate_get("/readyz").status_code == 503
