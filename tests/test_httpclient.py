"""actions/httpclient.py, the client every HTTP action sends with, against real loopback peers: keep-alive
reuse, connections the peer closed, the response cap, answers that are not HTTP, TLS (private CA, system CAs,
verify: false) and an HTTP forward proxy (absolute URI for http://, a CONNECT tunnel for https://); each sending test
runs twice, blocking and on the delivery lane's event loop (actions/httplane.py, tests/lane_support.py)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Iterator

import pytest

from actions.base import ActionContext
from actions.http import HttpAction
from actions.httpclient import USER_AGENT, HttpClient
from engine.errors import ConfigError, PermanentError, RetryableError
from engine.secrets import Secret
from tests.lane_support import Via, via  # noqa: F401 - fixture
from tests.peers import ForwardProxy, HttpPeer, RawPeer, Response, certificate, http_peer  # noqa: F401 - fixtures

KEY = "jti-1:provision:0"


def send(via: Via, url: str, client: HttpClient | None = None, **destination: object) -> object:
    action = HttpAction("target", {"type": "http", "base_url": url, **destination},
                        ActionContext(http=client or HttpClient()))
    return via.send(action, {"method": "POST", "path": "/users", "json": {"name": "ada"}}, KEY)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    peer = ForwardProxy()
    yield peer
    peer.close()


def test_connections_are_kept_alive_and_reused(via: Via, http_peer: HttpPeer) -> None:
    client = HttpClient()
    for _ in range(3):
        send(via, http_peer.url, client)
    assert len(http_peer.requests) == 3 and http_peer.connections == 1


def test_a_connection_the_peer_closed_while_idle_is_not_reused(via: Via) -> None:
    peer = RawPeer(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close_after=True)
    client = HttpClient()
    try:
        send(via, peer.url, client)
        time.sleep(0.2)  # the peer has closed its end; the idle socket reads as closed
        send(via, peer.url, client)
        assert (peer.requests, peer.connections) == (2, 2)
    finally:
        peer.close()


def test_an_answer_over_the_cap_is_cut_and_its_connection_not_reused(via: Via, http_peer: HttpPeer) -> None:
    http_peer.default = Response(200, b"x" * 200_000)
    client = HttpClient()
    result = via.exchange(client, "GET", http_peer.url + "/big", secrets=[], timeout=(5, 10), clock=time.time,
                      max_response_bytes=1000)
    assert len(result.body) == 1000
    via.exchange(client, "GET", http_peer.url + "/big", secrets=[], timeout=(5, 10), clock=time.time,
             max_response_bytes=1000)
    assert http_peer.connections == 2


@pytest.mark.parametrize("answer, why", [
    (b"SSH-2.0-OpenSSH_9.2 <script>alert(1)</script>\r\n\r\n", "Expected HTTP/, RTSP/ or ICE/"),
    (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", "the head of the answer is over 64 KiB"),
    (b"HTTP/1.1 200 OK\r\nX-Endless: " + b"a" * 4_000_000, "the head of the answer is over 64 KiB"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 150 + b"\r\n", "more than 100 header lines"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", "Duplicate Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "Invalid character in chunk size"),
])
def test_an_answer_that_is_not_http_is_retryable_and_never_quoted(via: Via, answer: bytes, why: str) -> None:
    peer = RawPeer(lambda n: answer, close_after=True)
    try:
        with pytest.raises(RetryableError) as failure:
            send(via, peer.url)
    finally:
        peer.close()
    assert str(failure.value) == f"cannot reach {peer.url}/users: the answer is not valid HTTP: {why}"


def test_an_answer_cut_short_by_the_peer_is_retryable(via: Via) -> None:
    peer = RawPeer(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close_after=True)
    try:
        with pytest.raises(RetryableError, match="the connection closed before the answer was complete"):
            send(via, peer.url)
    finally:
        peer.close()


def test_interim_answers_are_skipped_and_a_body_may_end_with_the_connection(via: Via) -> None:
    peer = RawPeer(lambda n: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nX-Id: 7\r\n\r\n{\"id\": 7}",
                   close_after=True)
    try:
        result = via.exchange(HttpClient(), "POST", peer.url + "/users", secrets=[], timeout=(5, 10), clock=time.time)
    finally:
        peer.close()
    assert (result.status, result.reason, result.headers["x-id"], result.body) == (201, "Created", "7", b'{"id": 7}')


def test_headers_that_could_end_a_line_are_refused_before_sending(via: Via, http_peer: HttpPeer) -> None:
    for name, value in (("X-A", "1\r\nX-Injected: 1"), ("X-A", b"1\n2"), ("X A", "1"), ("X-A", "\x00")):
        with pytest.raises(PermanentError, match="invalid request to .*: refused header"):
            via.exchange(HttpClient(), "POST", http_peer.url + "/users", secrets=[], timeout=(5, 10), clock=time.time,
                     headers={name: value})
    assert http_peer.requests == []


def test_requests_name_idhooks_and_ask_for_no_compression(via: Via, http_peer: HttpPeer) -> None:
    send(via, http_peer.url)
    headers = {name.lower(): value for name, value in http_peer.requests[0].headers.items()}
    assert headers["user-agent"] == USER_AGENT and "accept-encoding" not in headers
    assert headers["idempotency-key"] == KEY and headers["content-type"] == "application/json"


def test_https_with_a_private_ca_the_system_cas_and_verify_false(via: Via, certificate: tuple[Path, Path]) -> None:
    peer = HttpPeer(tls=certificate)
    try:
        send(via, peer.url, ca_file=str(certificate[0]))
        with pytest.raises(RetryableError, match=r"cannot reach https://127\.0\.0\.1:\d+/users: certificate verify "
                                                 "failed: self.signed certificate"):
            send(via, peer.url)
        send(via, peer.url, verify=False)
        assert len(peer.requests) == 2
    finally:
        peer.close()


def test_plain_http_through_a_forward_proxy(via: Via, http_peer: HttpPeer, proxy: ForwardProxy) -> None:
    send(via, http_peer.url, proxy=proxy.url("ops:pa%3Ass"))
    assert proxy.seen == [(f"POST {http_peer.url}/users HTTP/1.1",
                           "Basic " + base64.b64encode(b"ops:pa:ss").decode())]
    [request] = http_peer.requests
    assert request.path == "/users" and request.json() == {"name": "ada"}
    assert not any(name.lower().startswith("proxy-") for name in request.headers)


def test_https_through_a_connect_tunnel(via: Via, certificate: tuple[Path, Path], proxy: ForwardProxy) -> None:
    peer = HttpPeer(tls=certificate)
    try:
        send(via, peer.url, proxy=proxy.url("ops:secret"), ca_file=str(certificate[0]))
        assert proxy.seen == [(f"CONNECT 127.0.0.1:{peer.port} HTTP/1.1",
                               "Basic " + base64.b64encode(b"ops:secret").decode())]
        [request] = peer.requests
        assert request.path == "/users" and not any(name.lower().startswith("proxy-") for name in request.headers)
    finally:
        peer.close()


def test_only_an_http_proxy_is_accepted() -> None:
    with pytest.raises(ConfigError) as failure:
        HttpAction("target", {"type": "http", "base_url": "https://api.example.com", "proxy": "https://proxy:3128"},
                   ActionContext())
    assert failure.value.problems == [
        "config.yaml:0: destinations.target.proxy: expected an http:// proxy URL (https:// calls go through it in a "
        "CONNECT tunnel); TLS to the proxy itself is not supported"]


def test_headers_that_frame_the_request_come_from_idhooks_only(via: Via, http_peer: HttpPeer) -> None:
    with pytest.raises(ConfigError) as failure:
        HttpAction("target", {"type": "http", "base_url": http_peer.url,
                              "headers": {"Content-Length": "0", "Connection": "close", "X-Ok": "1"}},
                   ActionContext())
    assert failure.value.problems == [
        "config.yaml:0: destinations.target.headers.Content-Length: this header is set by idhooks (it frames the "
        "request)",
        "config.yaml:0: destinations.target.headers.Connection: this header is set by idhooks (it frames the "
        "request)"]
    assert HttpAction.check_rule_fields({"headers": {"Connection": "close", "Host": "x"}}) == [
        "headers.Connection: this header is set by idhooks", "headers.Host: this header is set by idhooks"]
    with pytest.raises(PermanentError, match=r"refused headers \['transfer-encoding'\]: the client writes them"):
        via.exchange(HttpClient(), "POST", http_peer.url + "/users", secrets=[], timeout=(5, 10), clock=time.time,
                 headers={"Transfer-Encoding": "chunked"})
    assert http_peer.requests == []


def test_a_destination_may_name_its_host_and_it_is_sent_once(via: Via) -> None:
    """Virtual hosting behind an address: the destination's Host replaces the URL's, it is not added to it."""
    peer = RawPeer(lambda n: b"HTTP/1.1 204 No Content\r\n\r\n")
    try:
        send(via, peer.url, headers={"Host": "api.internal.example"})
    finally:
        peer.close()
    [head] = peer.heads
    assert [line for line in head.split(b"\r\n") if line.lower().startswith(b"host:")] == [
        b"Host: api.internal.example"]


@pytest.mark.parametrize("value", ["api.example\r\nX-Injected: 1", "api.example\n", "a\x00b"])
def test_a_destination_header_that_could_break_the_head_is_a_load_error(value: str) -> None:
    for name, given in (("Host", value), ("X-Api-Key", Secret(value))):
        with pytest.raises(ConfigError) as failure:
            HttpAction("target", {"type": "http", "base_url": "http://127.0.0.1:9", "headers": {name: given}},
                       ActionContext())
        assert failure.value.problems == [f"config.yaml:0: destinations.target.headers.{name}: a header value may "
                                          "not hold CR, LF or NUL (it would end the header)"]
        assert value not in str(failure.value)


def test_an_empty_destination_host_is_refused_before_sending(via: Via) -> None:
    peer = RawPeer(lambda n: b"HTTP/1.1 204 No Content\r\n\r\n")
    try:
        with pytest.raises(PermanentError, match="invalid request to .*: refused header 'Host'"):
            send(via, peer.url, headers={"Host": ""})
    finally:
        peer.close()
    assert peer.heads == []


def test_a_connection_back_in_the_pool_is_not_shut_by_a_deadline_of_the_attempt_that_used_it(
        http_peer: HttpPeer) -> None:
    """A delivery's lease deadline outlives its exchange (the job is recorded after the send). When it passes
    then, it must not shut the connection the exchange gave back: another attempt may be using it by then."""
    from actions.deadline import deadline

    client = HttpClient(blocked_networks=())
    with deadline(0.3):  # the delivery worker's lease deadline
        with deadline(5) as limit:  # the exchange's own
            client.request("GET", http_peer.url + "/a", headers={}, body=None, connect_timeout=2, limit=limit,
                           max_response_bytes=1000)
        time.sleep(0.8)  # the lease deadline passes while the connection waits in the pool
    with deadline(5) as limit:
        answer = client.request("GET", http_peer.url + "/b", headers={}, body=None, connect_timeout=2, limit=limit,
                                max_response_bytes=1000)
    assert answer.status == 200
    assert http_peer.connections == 1  # the second request reused the first one's connection: it was not shut
