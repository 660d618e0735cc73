"""The connection class idhooks serves with (engine/receive/channel.py): a running task's small answer is
left to the task thread, so waitress's main loop does not spin on it; every answer still arrives whole, in
order, to fast and slow readers alike."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import waitress

from engine.receive.channel import TaskFlushedChannel, use_task_flushed_channels

BIG = 16 * 1024 * 1024
"""More than loopback's socket buffers hold: the server must wait for the reader."""


RELEASE = threading.Event()
"""/slow waits for it: the test sets it once the answer before /slow has arrived."""


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ["PATH_INFO"] == "/slow":
        RELEASE.wait(20)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"slow"]
    size = int(environ["PATH_INFO"].strip("/") or 2)
    body = (environ["PATH_INFO"].encode() + b"." * size)[:size]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(size))])
    return [body]


@pytest.fixture
def server() -> Iterator[Any]:
    created = use_task_flushed_channels(waitress.create_server(app, host="127.0.0.1", port=0, threads=4,
                                                               asyncore_use_poll=True))
    threading.Thread(target=created.run, daemon=True).start()
    try:
        yield created
    finally:
        created.close()


def read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """`count` HTTP/1.1 answers from `sock` (Content-Length framed)."""
    data, answers = b"", []
    while len(answers) < count:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection before answering"
        data += chunk
        while b"\r\n\r\n" in data:
            head, rest = data.split(b"\r\n\r\n", 1)
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            if len(rest) < length:
                break
            answers.append(rest[:length])
            data = rest[length:]
    return answers


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_server_accepts_connections_of_the_task_flushed_class(server: Any) -> None:
    created = server
    assert created.channel_class is TaskFlushedChannel


def test_small_answers_arrive_whole_on_a_kept_alive_connection(server: Any) -> None:
    created = server
    with socket.create_connection(("127.0.0.1", created.effective_port), timeout=10) as sock:
        for n in range(200):
            sock.sendall(request(f"/{100 + n}"))
            assert read_answers(sock, 1) == [(f"/{100 + n}".encode() + b"." * (100 + n))[:100 + n]]


def test_pipelined_requests_are_answered_in_order_each_once(server: Any) -> None:
    """Many pipelined requests: a finished answer is sent by its task thread while the main loop may be
    sending too; every answer arrives once and whole (an unlocked second sender once repeated a chunk)."""
    created = server
    sizes = [10 + n for n in range(300)]
    with socket.create_connection(("127.0.0.1", created.effective_port), timeout=10) as sock:
        sock.sendall(b"".join(request(f"/{size}") for size in sizes))
        answers = read_answers(sock, len(sizes))
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            assert sock.recv(65536) == b"", "more bytes than the answers"
    assert [len(answer) for answer in answers] == sizes


def test_a_large_answer_reaches_a_slow_reader(server: Any) -> None:
    """The task's own send fills the socket; the main loop drains the rest (above SMALL_OUTPUT, as waitress
    always did) once the reader starts reading, and the small answer after it follows."""
    created = server
    with socket.create_connection(("127.0.0.1", created.effective_port), timeout=30) as sock:
        sock.sendall(request(f"/{BIG}") + request("/7"))
        time.sleep(0.3)  # not reading yet: the server cannot send it all
        answers = read_answers(sock, 2)
        assert [len(answer) for answer in answers] == [BIG, 7]


def test_an_answer_is_not_held_back_by_the_pipelined_request_after_it(server: Any) -> None:
    """The first answer arrives while the second request's task is still running (it waits for the test)."""
    RELEASE.clear()
    with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as sock:
        sock.sendall(request("/12") + request("/slow"))
        try:
            assert read_answers(sock, 1) == [b"/12........."]
        finally:
            RELEASE.set()
        assert read_answers(sock, 1) == [b"slow"]
