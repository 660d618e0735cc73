"""The delivery benchmarks' sink (bench/sink.py) is the instrument that counts deliveries: every call must be
recorded once under its Idempotency-Key, over keep-alive connections and chunked bodies alike, and a request
that is not HTTP must not be counted."""

from __future__ import annotations

import socket

import requests

from bench.sink import Sink


def test_the_sink_counts_each_call_under_its_key_and_answers_200() -> None:
    sink = Sink()
    try:
        with requests.Session() as session:  # one keep-alive connection for all three
            for n in range(3):
                answer = session.post(sink.url + "/sink", json={"n": n}, headers={"Idempotency-Key": f"k{n % 2}"})
                assert answer.status_code == 200 and answer.content == b""
        chunked = requests.post(sink.url + "/sink", data=iter([b'{"a":', b" 1}"]),
                                headers={"Idempotency-Key": "chunked"})
        assert chunked.status_code == 200
        assert dict(sink.calls) == {"k0": 2, "k1": 1, "chunked": 1} and set(sink.first) == {"k0", "k1", "chunked"}
        sink.reset()
        assert not sink.calls and not sink.first
    finally:
        sink.close()


def test_a_request_that_is_not_http_is_refused_and_not_counted() -> None:
    sink = Sink()
    try:
        port = int(sink.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400")
        assert not sink.calls
    finally:
        sink.close()
