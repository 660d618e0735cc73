"""Issue 12 item 5 and the class "every unit of work has a deadline": a target that sends its headers (or
its greeting) and then one byte at a time is cut off when the attempt's total deadline passes, the attempt
is a retryable failure, and with several workers on one store the same job is never sent twice at once."""

from __future__ import annotations

import select
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from actions import build_actions
from actions.base import ActionContext
from actions.email import EmailAction
from actions.http import HttpAction
from actions.slack import SlackAction
from engine.config.settings import DeliveryConfig
from engine.deliver.worker import DeliveryWorker
from engine.errors import RetryableError
from engine.metrics import Metrics
from engine.runtime import Current
from engine.store.base import NewJob
from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, sample_event, signed
from tests.lane_support import Via, via  # noqa: F401 - fixture
from tests.peers import HttpPeer, http_peer  # noqa: F401 - fixture


class DripPeer:
    """A loopback TCP server that reads a request, sends `head` at once, then `body` one byte every
    `interval` seconds. Counts bytes dripped per connection and the most connections open at once."""

    def __init__(self, head: bytes, body: bytes, interval: float, *, read_request: bool = True) -> None:
        self.head, self.body, self.interval, self.read_request = head, body, interval, read_request
        self.sent: list[int] = []  # body bytes sent on each connection before it ended
        self.open = self.most_open = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        sent = 0
        try:
            if self.read_request:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
            conn.sendall(self.head)
            for byte in self.body:
                if self._client_left(conn) or self._stop.is_set():
                    return
                conn.sendall(bytes([byte]))
                sent += 1
        except OSError:
            pass  # the client cut the connection: what this peer is here to see
        finally:
            with self.lock:
                self.open -= 1
                self.sent.append(sent)
            conn.close()

    def _client_left(self, conn: socket.socket) -> bool:
        """Wait `interval`, noticing at once when the client closes or shuts its side (so `open` counts
        only connections a client still holds)."""
        readable, _, _ = select.select([conn], [], [], self.interval)
        return bool(readable) and not conn.recv(1024)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"


@pytest.fixture
def body_drip() -> Iterator[DripPeer]:
    """Headers at once, then the 100-byte body one byte every 0.5 s (50 s in all): each read is quick, so
    only a total deadline ends the exchange."""
    peer = DripPeer(HEAD, b"x" * 100, 0.5)
    yield peer
    peer.close()


@pytest.fixture
def header_drip() -> Iterator[DripPeer]:
    peer = DripPeer(b"", HEAD + b"x" * 100, 0.5)
    yield peer
    peer.close()


def test_http_attempt_is_cut_at_its_deadline(via: Via, body_drip: DripPeer) -> None:
    action = HttpAction("slow", {"type": "http", "base_url": body_drip.url, "timeout": 2}, ActionContext())
    with pytest.raises(RetryableError, match=r"timed out calling http://127.0.0.1:\d+/hook: deadline exceeded, no "
                                             r"complete answer within 2 s \(connect, send and response\)"):
        via.send(action, {"path": "/hook", "json": {"a": 1}}, "k")
    wait_closed(body_drip)
    assert body_drip.sent[0] < 100  # abandoned, not read to the end


def test_dripping_headers_are_cut_too(via: Via, header_drip: DripPeer) -> None:
    action = HttpAction("slow", {"type": "http", "base_url": header_drip.url, "timeout": 2}, ActionContext())
    with pytest.raises(RetryableError, match="deadline exceeded"):
        via.send(action, {"path": "/hook"}, "k")
    wait_closed(header_drip)
    assert header_drip.sent[0] < len(HEAD)


def test_slack_attempt_is_cut_at_its_deadline(body_drip: DripPeer) -> None:
    action = SlackAction("chat", {"type": "slack", "webhook_url": body_drip.url + "/services/T/B/x", "timeout": 2},
                         ActionContext())
    with pytest.raises(RetryableError, match="deadline exceeded"):
        action.send({"text": "hi"}, "k")
    wait_closed(body_drip)
    assert body_drip.sent[0] < 100


def test_smtp_conversation_is_cut_at_its_deadline() -> None:
    greeting = DripPeer(b"", b"220 slow.example ESMTP " + b"." * 100 + b"\r\n", 0.5, read_request=False)
    try:
        action = EmailAction("mail", {"type": "email", "host": "127.0.0.1", "port": greeting.port,
                                      "from": "idhooks@example.com", "timeout": 2}, ActionContext())
        with pytest.raises(RetryableError, match=rf"SMTP 127.0.0.1:{greeting.port}: deadline exceeded: the "
                                                 "conversation took more than 2 s"):
            action.send({"recipients": ["ops@example.com"], "subject": "s", "text": "t"}, "k")
        wait_closed(greeting)
        assert greeting.sent[0] < 100
    finally:
        greeting.close()


def wait_closed(peer: DripPeer, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not peer.sent and time.monotonic() < deadline:
        time.sleep(0.05)
    assert peer.sent, "the peer never saw its connection end"


@pytest.mark.slow
@pytest.mark.parametrize("lane", [True, False], ids=["lane", "threads"])
def test_two_workers_never_send_one_job_at_once_to_a_slow_drip_target(tmp_path: Path, lane: bool) -> None:
    """The destination allows 60 s, longer than the 6 s lease: the worker's lease deadline cuts each attempt
    first (one byte every 2 s, as the review's target did), so when the lease ends and the other worker
    claims the job, nobody is still sending it. The same on the delivery lane and from a delivery thread."""
    peer = DripPeer(HEAD, b"x" * 100, 2.0)
    store = SQLiteStore(tmp_path / "idhooks.db")
    delivery = DeliveryConfig(workers=1, lease=6, retry_for=3600, backoff_initial=0.1, backoff_max=0.2,
                              per_destination_concurrency=1, shutdown_grace=1, lane=lane)
    workers = []
    try:
        for owner in ("worker-a", "worker-b"):
            actions = build_actions({"slow": {"type": "http", "base_url": peer.url, "timeout": 60}}, ActionContext())
            workers.append(DeliveryWorker(store, Current(actions), delivery, Metrics(), owner=owner,
                                          poll_interval=0.1))
        store.enqueue_jobs([NewJob("j:r:0", "slow", "http", {"path": "/x"}, rule="r", jti="j",
                                   received_at=time.time())], time.time())
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(peer.sent) < 3:
            time.sleep(0.1)
    finally:
        for worker in workers:
            worker.stop(grace=10)
        peer.close()
    assert len(peer.sent) >= 3, "fewer attempts than expected"
    assert peer.most_open == 1, "the same job was being sent twice at once"
    [job] = store.list_jobs()
    assert job.attempts >= 3 and "deadline exceeded" in job.last_error
    store.close()


@pytest.mark.slow
def test_a_real_server_cuts_a_slow_drip_target_and_keeps_delivering_elsewhere(tmp_path: Path, serve,
                                                                               http_peer: HttpPeer) -> None:
    """The review's target: headers, then one byte every 2 s. Each attempt ends at the destination's 3 s
    deadline as a retryable failure, and the other destination's deliveries are not held up."""
    drip = DripPeer(HEAD, b"x" * 100, 2.0)
    try:
        config = basic_config(tmp_path, extra=(
            "delivery: {workers: 2, per_destination_concurrency: 1, backoff_initial: 1s, backoff_max: 2s}\n"
            "destinations:\n"
            f'  slow: {{type: http, base_url: "{drip.url}", timeout: 3}}\n'
            f'  fast: {{type: http, base_url: "{http_peer.url}"}}\n'))
        (tmp_path / "rules" / "r.yaml").write_text(
            "rules:\n  - id: both\n    event: login.loginFailed\n    actions:\n"
            "      - http: {to: slow, path: /hook}\n"
            "      - http: {to: fast, path: /hook, json: {jti: '{{ envelope.jti }}'}}\n")
        server = serve(config)
        sent = []
        for _ in range(5):
            event = sample_event()
            body, headers = signed(event)
            assert requests.post(server.url + "/webhooks/asgardeo", data=body, headers=headers,
                                 timeout=10).status_code == 202
            sent.append(event["jti"])
        arrived = http_peer.wait_for(5, timeout=60)
        assert sorted(r.json()["jti"] for r in arrived) == sorted(sent)
        deadline = time.monotonic() + 60
        while len(drip.sent) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(drip.sent) >= 3 and all(count < 100 for count in drip.sent)
        store = SQLiteStore(tmp_path / "var" / "idhooks.db")
        try:
            cut = [job for job in store.list_jobs(limit=100) if job.destination == "slow" and job.attempts]
        finally:
            store.close()
        assert cut and all("deadline exceeded, no complete answer within 3 s" in job.last_error for job in cut)
    finally:
        drip.close()
