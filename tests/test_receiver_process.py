"""What only a real `idhooks serve` process shows: chunked bodies through waitress, the size limit before
the body is read, JSON logs, SIGHUP reload of secrets, and graceful SIGTERM."""

from __future__ import annotations

import json
import signal
import time

import requests

from tests.conftest import SECRET, basic_config, free_port, sample_event, signed


def chunks(body: bytes, size: int = 4096):
    for start in range(0, len(body), size):
        yield body[start:start + size]


def test_chunked_bodies_are_accepted_and_oversized_ones_refused(tmp_path, serve):
    port = free_port()
    config = basic_config(tmp_path, port=port)
    config.write_text(config.read_text().replace("max_body_bytes: 1048576", "max_body_bytes: 65536"))
    server = serve(config, port)
    url = server.url + "/webhooks/asgardeo"

    event = sample_event()
    event["padding"] = "p" * 20000  # the hub chunks bodies of 8 KB or more
    body, headers = signed(event)
    response = requests.post(url, data=chunks(body), headers=headers, timeout=10)
    assert response.status_code == 202, response.text
    assert response.json()["jti"] == event["jti"]

    big = sample_event()
    big["padding"] = "p" * 100000
    body, headers = signed(big)
    assert requests.post(url, data=chunks(body), headers=headers, timeout=10).status_code == 413
    # Content-Length above the limit is refused from the header, before the body is read
    assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 413


def test_json_logs_have_one_line_per_request_with_the_facts(tmp_path, serve):
    port = free_port()
    config = basic_config(tmp_path, port=port)
    server = serve(config, port, args=("--log-json",))
    event = sample_event()
    event["jti"] = "evil\nFAKE-LINE"
    body, headers = signed(event)
    assert requests.post(server.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10).status_code == 202
    server.stop()
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    [accepted] = [line for line in lines if line.get("outcome") == "accepted"]
    assert accepted["webhook"] == "asgardeo"
    assert accepted["jti"] == "evil\nFAKE-LINE"
    assert accepted["types"] == ["login.loginFailed"]
    assert accepted["latency_ms"] >= 0
    assert not any(line.startswith("FAKE-LINE") for line in server.log().splitlines())


def test_sighup_reloads_the_secret_without_a_restart(tmp_path, serve):
    port = free_port()
    config = basic_config(tmp_path, port=port)
    server = serve(config, port)
    url = server.url + "/webhooks/asgardeo"
    body, headers = signed(sample_event())
    assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 202
    (tmp_path / "secret").write_text("rotated-secret")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        body, headers = signed(sample_event(), secret="rotated-secret")
        status = requests.post(url, data=body, headers=headers, timeout=10).status_code
        if status == 202:
            break
        time.sleep(0.1)
    assert status == 202
    body, headers = signed(sample_event(), secret=SECRET)
    assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 401


def test_a_broken_config_on_sighup_keeps_the_running_one_and_shows_the_error(tmp_path, serve):
    port = free_port()
    config = basic_config(tmp_path, port=port)
    server = serve(config, port)
    config.write_text(config.read_text().replace("max_body_bytes", "max_body_byte"))
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    ready = {}
    while time.monotonic() < deadline:
        ready = requests.get(server.url + "/readyz", timeout=5).json()
        if ready["rules"]["errors"]:
            break
        time.sleep(0.1)
    assert any("server.max_body_byte: unknown key (did you mean 'max_body_bytes'?)" in e
               for e in ready["rules"]["errors"])
    body, headers = signed(sample_event())
    assert requests.post(server.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10).status_code == 202


def test_sigterm_stops_cleanly(tmp_path, serve):
    port = free_port()
    server = serve(basic_config(tmp_path, port=port), port)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0
    assert "shutting down" in server.log()
