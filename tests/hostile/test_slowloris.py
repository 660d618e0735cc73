"""Slow and idle clients against a real `idhooks serve` (issue 12, item 2). With waitress's own limits (100
connections, idle for 120 s) about 100 idle connections locked the hub out; idhooks's defaults
(server.connection_limit 1000, channel_timeout 30 s) leave room for the genuine POST, and a server at its
connection limit recovers once idle connections time out."""

from __future__ import annotations

import socket
import threading
from contextlib import ExitStack

import pytest
import requests

from tests.conftest import basic_config, sample_event, signed


def idle_connections(stack: ExitStack, port: int, count: int, first_bytes: bytes = b"") -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        if first_bytes:
            sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


def drip(sockets: list[socket.socket], stop: threading.Event) -> None:
    """Slowloris: one more header line on every connection every 0.5 s, never the end of the headers."""
    n = 0
    while not stop.wait(0.5):
        n += 1
        for sock in sockets:
            try:
                sock.sendall(f"X-Drip-{n}: a\r\n".encode())
            except OSError:
                pass


def genuine_post(url: str) -> requests.Response:
    body, headers = signed(sample_event())
    return requests.post(url + "/webhooks/asgardeo", data=body, headers=headers, timeout=15)


@pytest.mark.slow
def test_hundreds_of_idle_and_dripping_connections_do_not_lock_out_the_hub(tmp_path, serve):
    server = serve(basic_config(tmp_path))
    stop = threading.Event()
    with ExitStack() as stack:
        idle_connections(stack, server.port, 200)
        dripping = idle_connections(stack, server.port, 100, b"POST /webhooks/asgardeo HTTP/1.1\r\nHost: x\r\n")
        dripper = threading.Thread(target=drip, args=(dripping, stop), daemon=True)
        dripper.start()
        try:
            for _ in range(3):
                assert genuine_post(server.url).status_code == 202  # within the 15 s deadline, every time
            assert requests.get(server.url + "/webhooks/asgardeo", timeout=15, params={
                "hub.mode": "subscribe", "hub.topic": "acme.x.schema.wso2.v1.event.login",
                "hub.challenge": "c1"}).text == "c1"
        finally:
            stop.set()
            dripper.join()


@pytest.mark.slow
def test_a_server_at_its_connection_limit_recovers_when_idle_connections_time_out(tmp_path, serve):
    config = basic_config(tmp_path)
    config.write_text(config.read_text().replace(
        "max_body_bytes: 1048576}", "max_body_bytes: 1048576, connection_limit: 20, channel_timeout: 2s, "
                                    "cleanup_interval: 1s}"))
    server = serve(config)
    with ExitStack() as stack:
        idle = idle_connections(stack, server.port, 40)
        assert genuine_post(server.url).status_code == 202  # served once the idle ones were closed
        for sock in idle[:20]:
            sock.settimeout(10)
            assert sock.recv(1) == b""  # closed by the server, not by us


@pytest.mark.slow
def test_oversized_request_headers_are_refused(tmp_path, serve):
    server = serve(basic_config(tmp_path))
    result = requests.get(server.url + "/healthz", headers={"X-Big": "x" * 70_000}, timeout=15)
    assert result.status_code == 431
    assert genuine_post(server.url).status_code == 202
