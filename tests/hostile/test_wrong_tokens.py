"""Wrong tokens are limited per client address (engine/throttle.py): an address that sends 10 wrong API
tokens or console logins within a minute is refused with 429 and Retry-After until the minute ends, a correct
token included; other addresses go on; the table of addresses stays bounded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from engine.throttle import LIMIT, WINDOW, FailedAuthThrottle
from engine.errors import TooManyRequestsError
from tests.api_support import OPERATOR_TOKEN, VIEWER_TOKEN, Deployment, deployment

ATTACKER = "203.0.113.7"
OPERATOR = "198.51.100.20"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(tmp_path: Path, clock: Clock) -> Deployment:
    deployed = deployment(tmp_path)
    deployed.service.api.throttle = FailedAuthThrottle(clock=clock)
    return deployed


def get(api: Deployment, token: str | None, address: str, path: str = "/api/v1/events"):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return api.client.simulate_get(path, headers=headers, remote_addr=address)


def test_ten_wrong_api_tokens_then_429_with_retry_after_even_for_the_right_one(api: Deployment, clock: Clock) -> None:
    for n in range(LIMIT):
        assert get(api, f"guess-{n}", ATTACKER).status_code == 401
    refused = get(api, VIEWER_TOKEN, ATTACKER)  # a right guess now cannot be told from a wrong one
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == str(int(WINDOW))
    assert refused.json["error"] == "too many requests"
    assert "too many wrong tokens from your address for the API" in refused.json["detail"]
    assert VIEWER_TOKEN not in refused.text
    clock.now += WINDOW / 2
    assert get(api, VIEWER_TOKEN, ATTACKER).headers["Retry-After"] == str(int(WINDOW / 2))
    assert get(api, VIEWER_TOKEN, OPERATOR).status_code == 200  # another address is not held back
    clock.now += WINDOW / 2
    assert get(api, VIEWER_TOKEN, ATTACKER).status_code == 200  # the window is over


def test_requests_without_a_token_are_not_counted(api: Deployment) -> None:
    for _ in range(LIMIT * 2):
        assert get(api, None, ATTACKER).status_code == 401
    assert get(api, VIEWER_TOKEN, ATTACKER).status_code == 200


def test_failures_spread_over_windows_are_not_refused(api: Deployment, clock: Clock) -> None:
    for _ in range(3):
        for n in range(LIMIT - 1):
            assert get(api, f"guess-{n}", ATTACKER).status_code == 401
        clock.now += WINDOW
    assert get(api, OPERATOR_TOKEN, ATTACKER).status_code == 200


def test_console_login_is_limited_and_says_so_on_the_form(api: Deployment, caplog: pytest.LogCaptureFixture) -> None:
    def login(token: str, address: str):
        return api.client.simulate_post("/console/login", body=f"token={token}", remote_addr=address,
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})

    with caplog.at_level(logging.WARNING, logger="idhooks.auth"):
        for n in range(LIMIT):
            assert login(f"guess-{n}", ATTACKER).status_code == 401
    assert [r.getMessage() for r in caplog.records] == ["wrong tokens: refusing an address for the rest of the window"]
    refused = login(OPERATOR_TOKEN, ATTACKER)
    assert refused.status_code == 429 and "Set-Cookie" not in refused.headers
    assert refused.headers["Retry-After"] == str(int(WINDOW))
    assert "Too many wrong tokens from your address for the console login; try again in 60 s." in refused.text
    assert OPERATOR_TOKEN not in refused.text
    assert login(OPERATOR_TOKEN, OPERATOR).status_code == 303  # logged in from elsewhere
    # the API and the console count together: the address is refused by the API as well
    assert get(api, VIEWER_TOKEN, ATTACKER).status_code == 429


def test_the_address_table_is_bounded(clock: Clock) -> None:
    """A client rotating addresses grows the table up to its bound and no further; the oldest go first."""
    throttle = FailedAuthThrottle(limit=2, max_addresses=100, clock=clock)
    for n in range(1000):
        throttle.failed(f"2001:db8::{n:x}", "the API")
    assert len(throttle) == 100
    throttle.failed("2001:db8::3e7", "the API")  # the newest one is still counted: its second failure
    with pytest.raises(TooManyRequestsError) as refused:
        throttle.check("2001:db8::3e7", "the API")
    assert refused.value.status == 429 and refused.value.retry_after == int(WINDOW)
    throttle.failed("2001:db8::0", "the API")  # forgotten, so this is a first failure again
    throttle.check("2001:db8::0", "the API")


@pytest.mark.parametrize("address", ["", "<script>alert(1)</script>", "a\r\nInjected: 1", "x" * 10_000])
def test_odd_addresses_are_just_keys(address: str, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    throttle = FailedAuthThrottle(limit=1, clock=clock)
    with caplog.at_level(logging.WARNING, logger="idhooks.auth"):
        throttle.failed(address, "the API")
    with pytest.raises(TooManyRequestsError) as refused:
        throttle.check(address, "the API")
    assert address not in str(refused.value) or address == ""  # the message never carries the address
    assert caplog.records[0].address == address  # the log formatter escapes it (tests/test_logs.py)


def test_metrics_token_is_limited_too(tmp_path: Path) -> None:
    """/metrics (main port, and its own listener's app) refuses an address after 10 wrong tokens."""
    import falcon.testing

    from engine.config.settings import load_config
    from engine.metrics import Metrics
    from engine.receive.app import create_app, create_metrics_app
    from engine.store.sqlite import SQLiteStore
    from tests.conftest import basic_config

    config = load_config(basic_config(tmp_path, extra='metrics: {token: "${METRICS_TOKEN}"}'),
                         env={"METRICS_TOKEN": "scrape-token-77"})
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    try:
        for app in (create_app(config, store), create_metrics_app(Metrics(), config.metrics.token)):
            client = falcon.testing.TestClient(app)

            def scrape(token: str, address: str = ATTACKER,
                       client: falcon.testing.TestClient = client) -> falcon.testing.Result:
                return client.simulate_get("/metrics", headers={"Authorization": f"Bearer {token}"},
                                           remote_addr=address)

            for n in range(LIMIT):
                assert scrape(f"guess-{n}").status_code == 401
            refused = scrape("scrape-token-77")
            assert refused.status_code == 429 and refused.headers["Retry-After"] == str(int(WINDOW))
            assert "too many wrong tokens from your address for /metrics" in refused.json["error"]
            assert scrape("scrape-token-77", OPERATOR).status_code == 200
    finally:
        store.close()


def test_a_real_api_listener_counts_per_client_behind_the_trusted_proxy(tmp_path: Path, serve: Any) -> None:
    """`idhooks serve` with api.listen and server.trusted_proxy: the API's own listener takes the client address
    from the proxy's X-Forwarded-For, so one client's wrong tokens do not lock out the others behind it."""
    import requests

    from tests.api_support import API_CONFIG, api_config
    from tests.conftest import free_port

    port, api_port = free_port(), free_port()
    config = api_config(tmp_path, extra=API_CONFIG + f"  listen: 127.0.0.1:{api_port}\n", port=port)
    config.write_text(config.read_text().replace("max_body_bytes: 1048576}",
                                                 "max_body_bytes: 1048576, trusted_proxy: 127.0.0.1}"))
    serve(config, port)
    url = f"http://127.0.0.1:{api_port}/api/v1/events"

    def call(token: str, client: str) -> requests.Response:
        return requests.get(url, headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": client}, timeout=10)

    for n in range(LIMIT):
        assert call(f"guess-{n}", ATTACKER).status_code == 401
    refused = call(VIEWER_TOKEN, ATTACKER)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert call(VIEWER_TOKEN, OPERATOR).status_code == 200
