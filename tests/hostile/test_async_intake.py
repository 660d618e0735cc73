"""The async intake (server.http_server: granian, the default; engine/receive/front.py) against a real
`idhooks serve`: slow bodies cost a coroutine, not one of `server.threads`; every body has a deadline and a
bound; proxy headers are believed only from `server.trusted_proxy`; `http_server: waitress` still serves."""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from engine.config.settings import load_config
from engine.errors import ConfigError
from tests.conftest import SECRET, sample_event, signed, write_config


def config(directory: Path, server: str = "") -> Path:
    (directory / "secret").write_text(SECRET)
    (directory / "rules").mkdir(exist_ok=True)
    return write_config(directory, f"""
server:
  host: 127.0.0.1
  port: 8080
  threads: 2
{server}
store: {{url: "sqlite:///var/idhooks.db"}}
webhooks:
  - name: asgardeo
    path: /webhooks/asgardeo
    secret_file: secret
    topics: ["acme.*.schema.wso2.v1.event.*"]
rules: {{paths: [rules/]}}
""")


def stored(directory: Path) -> list[str]:
    with sqlite3.connect(directory / "var" / "idhooks.db") as conn:
        return [row[0] for row in conn.execute("SELECT jti FROM events")]


def quarantined_sources(directory: Path) -> list[str]:
    with sqlite3.connect(directory / "var" / "idhooks.db") as conn:
        return [row[0] for row in conn.execute("SELECT source FROM quarantine")]


def post(url: str, **headers: str) -> requests.Response:
    event = sample_event()
    body, signature = signed(event)
    return requests.post(url + "/webhooks/asgardeo", data=body, headers={**signature, **headers}, timeout=15)


def slow_bodies(stack: ExitStack, port: int, count: int, path: str) -> list[socket.socket]:
    """Connections that send a request head promising 1,000 bytes of body, then one byte."""
    sockets = []
    for _ in range(count):
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=20))
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 1000\r\n\r\n{{".encode())
        sockets.append(sock)
    return sockets


@pytest.mark.slow
def test_more_slow_bodies_than_threads_block_neither_events_nor_other_routes(tmp_path, serve):
    server = serve(config(tmp_path, "  channel_timeout: 3s"))
    with ExitStack() as stack:
        events = slow_bodies(stack, server.port, 20, "/webhooks/asgardeo")
        others = slow_bodies(stack, server.port, 20, "/api/v1/rules")  # bridged to the Falcon app (2 threads)
        time.sleep(0.3)
        answer = post(server.url)
        assert answer.status_code == 202
        assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
        assert answer.json()["jti"] in stored(tmp_path)
        for sock in events + others:  # each slow body is refused at its deadline, not left hanging
            head = sock.recv(200)
            assert head.startswith(b"HTTP/1.1 408"), head
    log = server.log()
    assert "server.channel_timeout (3 s)" in log and "outcome=timeout status=408" in log


@pytest.mark.slow
def test_a_client_that_leaves_mid_body_costs_nothing(tmp_path, serve):
    server = serve(config(tmp_path, "  channel_timeout: 2s"))
    with ExitStack() as stack:
        gone = slow_bodies(stack, server.port, 50, "/webhooks/asgardeo")
        for sock in gone:
            sock.close()
    assert post(server.url).status_code == 202
    assert len(stored(tmp_path)) == 1


def test_bodies_over_the_bound_are_refused_before_they_are_read(tmp_path, serve):
    server = serve(config(tmp_path, "  max_body_bytes: 4096"))
    assert requests.post(server.url + "/webhooks/asgardeo", data=b"{" * 5000,
                         headers={"Content-Type": "application/json"}, timeout=10).status_code == 413
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:  # a claim of 10 GB, no body
        sock.sendall(b"POST /api/v1/rules HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n")
        assert sock.recv(200).startswith(b"HTTP/1.1 413")
    chunks = (b"{" * 1024 for _ in range(8))  # chunked: no Content-Length to refuse by
    assert requests.post(server.url + "/webhooks/asgardeo", data=chunks,
                         headers={"Content-Type": "application/json"}, timeout=10).status_code == 413
    assert stored(tmp_path) == []
    assert "outcome=too_large status=413" in server.log()


def test_x_forwarded_for_is_ignored_unless_from_the_trusted_proxy(tmp_path, serve):
    server = serve(config(tmp_path))
    assert post(server.url, **{"X-Hub-Signature": "sha256=" + "0" * 64, "X-Forwarded-For": "203.0.113.9"}
                ).status_code == 401
    assert quarantined_sources(tmp_path) == ["127.0.0.1"]


def test_the_trusted_proxy_names_the_client_by_its_last_x_forwarded_for_entry(tmp_path, serve):
    server = serve(config(tmp_path, "  trusted_proxy: 127.0.0.1"))
    assert post(server.url, **{"X-Hub-Signature": "sha256=" + "0" * 64,
                               "X-Forwarded-For": "198.51.100.7, 203.0.113.9"}).status_code == 401
    assert quarantined_sources(tmp_path) == ["203.0.113.9"]


def test_many_events_at_once_are_all_stored_before_their_202(tmp_path, serve):
    server = serve(config(tmp_path))
    answers: list[requests.Response] = []

    def send() -> None:
        with requests.Session() as session:
            for _ in range(25):
                body, headers = signed(sample_event())
                answers.append(session.post(server.url + "/webhooks/asgardeo", data=body, headers=headers,
                                            timeout=15))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [202] * 200
    assert sorted(a.json()["jti"] for a in answers) == sorted(stored(tmp_path))


def test_http_server_waitress_serves_the_same_intake(tmp_path, serve):
    server = serve(config(tmp_path, "  http_server: waitress"))
    answer = post(server.url)
    assert answer.status_code == 202 and answer.headers["Server"] == "idhooks"
    assert stored(tmp_path) == [answer.json()["jti"]]
    server.stop()  # INFO lines are written in batches; stopping writes the rest
    assert "http_server=waitress" in server.log()


def test_an_unknown_http_server_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(config(tmp_path, "  http_server: nginx"))
    assert "http_server" in str(error.value) and "'granian'" in str(error.value)


def test_bodies_held_at_once_are_bounded_over_all_connections(tmp_path, serve):
    server = serve(config(tmp_path, "  max_buffered_bytes: 300000"))
    with ExitStack() as stack:
        holders = []
        for _ in range(2):  # 2 x 140,000 bytes of bodies that never finish
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            sock.sendall(b"POST /webhooks/asgardeo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 200000\r\n\r\n" + b"{" * 140_000)
            holders.append(sock)
        time.sleep(0.5)
        body, _ = signed(sample_event())
        padded = body[:-1] + b', "pad": "' + b"x" * 40_000 + b'"}'  # 40 KB more would go over the budget
        busy = requests.post(server.url + "/webhooks/asgardeo", data=padded, headers=signed(padded)[1], timeout=10)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "2"
        assert "server.max_buffered_bytes (300000)" in busy.json()["error"]
        assert post(server.url).status_code == 202  # a small event still fits
    time.sleep(0.5)  # the held bodies were given back when their clients left
    assert requests.post(server.url + "/webhooks/asgardeo", data=padded, headers=signed(padded)[1],
                         timeout=10).status_code == 202
    assert "outcome=busy status=503" in server.log()


def test_small_bodies_that_time_out_or_are_abandoned_give_their_budget_back(tmp_path, serve):
    """A body declared at most 64 KiB counts against the budget for its declared length from the start
    (granian gathers it whole): a client that declares one and stalls until its 408, or leaves, must not keep
    that count, or a few hundred such clients would leave every later event a 503."""
    server = serve(config(tmp_path, "  max_buffered_bytes: 100000\n  channel_timeout: 1s"))
    body, _ = signed(sample_event())
    padded = body[:-1] + b', "pad": "' + b"x" * 20_000 + b'"}'  # ~21 KB: fits only while nothing else is held
    head = (b"POST /webhooks/asgardeo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 40000\r\n\r\n{")
    with ExitStack() as stack:
        stalled = []
        for _ in range(2):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            sock.sendall(head)
            stalled.append(sock)
        time.sleep(0.3)
        held = requests.post(server.url + "/webhooks/asgardeo", data=padded, headers=signed(padded)[1], timeout=10)
        assert held.status_code == 503  # 2 x 40,000 declared bytes are held
        for sock in stalled:
            assert sock.recv(100).startswith(b"HTTP/1.1 408")
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(head)  # and leaves
    time.sleep(0.5)
    accepted = requests.post(server.url + "/webhooks/asgardeo", data=padded, headers=signed(padded)[1], timeout=10)
    assert accepted.status_code == 202, accepted.text


@pytest.mark.slow
def test_every_event_answered_202_before_a_sigterm_is_stored(tmp_path, serve):
    """SIGTERM while 8 clients keep posting: the server drains and exits 0; whatever got its 202 is stored
    (a request cut off by the shutdown got no 202, so the hub would retry it)."""
    server = serve(config(tmp_path))
    acknowledged: list[str] = []
    stop = threading.Event()

    def send() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                body, headers = signed(sample_event())
                try:
                    answer = session.post(server.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10)
                except requests.RequestException:
                    return
                if answer.status_code == 202:
                    acknowledged.append(answer.json()["jti"])

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) > 50
    assert set(acknowledged) <= set(stored(tmp_path))


def raw_exchange(port: int, request: bytes) -> bytes:
    """Everything the server answers to `request` until it closes the connection (or 5 s of quiet)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except TimeoutError:
            pass
    return answer


def test_malformed_framing_is_refused_and_nothing_is_smuggled(tmp_path, serve):
    server = serve(config(tmp_path, "  channel_timeout: 2s"))
    head = b"POST /webhooks/asgardeo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    # granian ends a malformed chunked body as if it were complete: what arrived cannot carry a valid signature
    bad_chunk = raw_exchange(server.port, head + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n")
    assert bad_chunk.startswith(b"HTTP/1.1 401"), bad_chunk
    assert bad_chunk.count(b"HTTP/1.1 ") == 1
    cut = raw_exchange(server.port, head + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nZZ\r\n")
    assert cut.startswith(b"HTTP/1.1 401"), cut
    # a body shorter than its Content-Length is waited for until channel_timeout, then refused
    short = raw_exchange(server.port, head + b"Content-Length: 500\r\n\r\n{}")
    assert short.startswith(b"HTTP/1.1 408"), short
    two_lengths = raw_exchange(server.port, head + b"Content-Length: 2\r\nContent-Length: 5\r\n\r\n{}abc")
    assert two_lengths.startswith(b"HTTP/1.1 400"), two_lengths
    # Content-Length and Transfer-Encoding together: the chunked body wins, and the request hidden after its
    # end is not answered as a second request on that connection
    smuggled = raw_exchange(server.port, head + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                                                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert smuggled.count(b"HTTP/1.1 ") == 1 and b"alive" not in smuggled, smuggled
    assert stored(tmp_path) == []


def raw_post(port: int, body: bytes, extra_headers: bytes) -> bytes:
    return raw_exchange(port, b"POST /webhooks/asgardeo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Connection: close\r\nContent-Length: %d\r\n" % len(body) + extra_headers + b"\r\n" + body)


def test_header_bytes_outside_visible_ascii_and_undecodable_paths_are_harmless(tmp_path, serve):
    """granian hands over only header values of visible ASCII and the path decoded as UTF-8: a stray header
    with other bytes is ignored, a signature carrying them is as if absent (401, nothing stored), and a path
    with an invalid escape is a plain 404."""
    server = serve(config(tmp_path))
    body, headers = signed(sample_event())
    signature = b"X-Hub-Signature: " + headers["X-Hub-Signature"].encode()
    ignored = raw_post(server.port, body, signature + b"\r\nX-Note: caf\xe9\xff\r\n")
    assert ignored.startswith(b"HTTP/1.1 202"), ignored
    body, headers = signed(sample_event())
    spoiled = raw_post(server.port, body, b"X-Hub-Signature: " + headers["X-Hub-Signature"].encode() + b"\xff\r\n")
    assert spoiled.startswith(b"HTTP/1.1 401") and b"missing signature" in spoiled, spoiled
    assert len(stored(tmp_path)) == 1
    lost = raw_exchange(server.port, b"GET /webhooks/%FF%FE/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert lost.startswith(b"HTTP/1.1 404"), lost
