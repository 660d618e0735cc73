"""The http action against a real loopback target: URL safety, headers, bodies, result classes."""

from __future__ import annotations

import ipaddress
import json
import logging

import pytest

from actions import build_actions
from actions.base import ActionContext
from actions.http import HttpAction
from actions.httpclient import HttpClient
from actions.safenet import blocked
from engine.errors import ConfigError, PermanentError, RetryableError
from engine.secrets import Secret
from tests.lane_support import Via, via  # noqa: F401 - fixture
from tests.peers import HttpPeer, Response, http_peer, redirect  # noqa: F401 - fixture

KEY = "jti-1:provision-user:0"


def http_action(url: str, **extra: object) -> HttpAction:
    return HttpAction("provisioning", {"type": "http", "base_url": url, **extra}, ActionContext())


def test_posts_json_body_with_idempotency_key_and_secret_header(via: Via, http_peer: HttpPeer) -> None:
    action = http_action(http_peer.url + "/api", headers={"Authorization": Secret("Bearer s3cr3t-token")})
    name = 'O\'Brien "the admin"\nline two \u00e9\u4e2d\U0001F600'
    via.send(action, {"method": "POST", "path": "/users", "query": {"source": "idhooks"},
                 "json": {"userName": name, "groups": ["a", "b"], "active": True}}, KEY)
    [request] = http_peer.requests
    assert (request.method, request.path, request.query) == ("POST", "/api/users", {"source": ["idhooks"]})
    assert request.headers["Idempotency-Key"] == KEY
    assert request.headers["Authorization"] == "Bearer s3cr3t-token"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"userName": name, "groups": ["a", "b"], "active": True}


def test_raw_body_with_content_type(via: Via, http_peer: HttpPeer) -> None:
    via.send(http_action(http_peer.url), {"path": "audit", "body": "user=alice\n", "content_type": "text/csv"}, KEY)
    [request] = http_peer.requests
    assert (request.path, request.body, request.headers["Content-Type"]) == ("/audit", b"user=alice\n", "text/csv")


@pytest.mark.parametrize("path", ["http://evil.example/users", "//evil.example/users", "https://127.0.0.1/x",
                                  "http://user@127.0.0.1/x"])
def test_templated_host_change_is_refused(via: Via, http_peer: HttpPeer, path: str) -> None:
    with pytest.raises(PermanentError, match="refused URL .*allows only http:// to 127.0.0.1"):
        via.send(http_action(http_peer.url), {"path": path}, KEY)
    assert http_peer.requests == []


def test_path_text_that_looks_like_a_host_stays_a_path(via: Via, http_peer: HttpPeer) -> None:
    via.send(http_action(http_peer.url), {"path": "evil.example/users"}, KEY)
    assert http_peer.requests[0].path == "/evil.example/users"


def test_allowed_hosts_may_be_named_by_a_rule(via: Via, http_peer: HttpPeer) -> None:
    action = http_action("http://provisioning.invalid", allowed_hosts=[f"127.0.0.1:{http_peer.port}"])
    via.send(action, {"path": f"http://127.0.0.1:{http_peer.port}/users"}, KEY)
    assert http_peer.requests[0].path == "/users"


def test_an_allowed_host_without_a_port_allows_only_the_default_port(via: Via, http_peer: HttpPeer) -> None:
    action = http_action(http_peer.url, allowed_hosts=["localhost"])
    with pytest.raises(PermanentError, match=r"refused URL 'http://localhost:6379/': .* allows only http:// to "
                                             rf"127\.0\.0\.1:{http_peer.port}, localhost:80 "):
        via.send(action, {"path": "http://localhost:6379/"}, KEY)
    with pytest.raises(PermanentError, match="refused URL 'http://127.0.0.1:6379/x'"):
        via.send(action, {"path": "http://127.0.0.1:6379/x"}, KEY)  # the base URL's host, another port
    assert http_peer.requests == []


def test_allowed_hosts_entries_must_be_host_or_host_port() -> None:
    with pytest.raises(ConfigError) as failure:
        http_action("http://127.0.0.1", allowed_hosts=["a.example:99999", "b.example/x", "u@c.example"])
    assert [p.split(": ", 2)[2] for p in failure.value.problems] == [
        "expected host or host:port, got 'a.example:99999'", "expected host or host:port, got 'b.example/x'",
        "expected host or host:port, got 'u@c.example'"]


def test_link_local_and_metadata_addresses_are_refused_even_when_allowed(via: Via) -> None:
    action = http_action("http://169.254.169.254", allowed_hosts=["169.254.169.254"])
    with pytest.raises(PermanentError, match="resolves to 169.254.169.254, a link-local/metadata address"):
        via.send(action, {"path": "/latest/meta-data/"}, KEY)
    with pytest.raises(PermanentError, match="resolves to fd00:ec2::254"):
        via.send(http_action("http://[fd00:ec2::254]"), {}, KEY)
    with pytest.raises(PermanentError, match="resolves to fe80::1, a link-local"):  # a zone id does not hide it
        via.send(http_action("http://[fe80::1%25eth0]"), {}, KEY)


def test_redirect_is_not_followed(via: Via, http_peer: HttpPeer) -> None:
    other = HttpPeer()
    try:
        http_peer.script.append(redirect(other.url + "/steal"))
        with pytest.raises(PermanentError, match=f"answered 302 redirect to {other.url}/steal; redirects are not "
                                                 "followed"):
            via.send(http_action(http_peer.url), {"path": "/users"}, KEY)
        assert other.requests == []
    finally:
        other.close()


def test_result_classes_and_retry_after(via: Via, http_peer: HttpPeer) -> None:
    action = http_action(http_peer.url)
    http_peer.script += [Response(503, b"busy", {"Retry-After": "7"}), Response(429, b"slow down"),
                         Response(404, b"no such user")]
    with pytest.raises(RetryableError, match="answered 503: busy") as retry:
        via.send(action, {}, KEY)
    assert retry.value.retry_after == 7
    with pytest.raises(RetryableError, match="answered 429"):
        via.send(action, {}, KEY)
    with pytest.raises(PermanentError, match="answered 404: no such user") as permanent:
        via.send(action, {}, KEY)
    assert permanent.value.response_snippet == "no such user"


def test_response_snippet_redacts_secrets_and_is_capped(via: Via, http_peer: HttpPeer) -> None:
    action = http_action(http_peer.url, headers={"X-Api-Key": Secret("key-0451")}, max_response_bytes=100)
    http_peer.script.append(Response(400, "bad key key-0451 " + "x" * 5000))
    with pytest.raises(PermanentError) as failure:
        via.send(action, {}, KEY)
    assert failure.value.response_snippet == ("bad key *** " + "x" * 5000)[:95]
    assert "key-0451" not in str(failure.value)


def test_connection_refused_is_retryable(via: Via) -> None:
    peer = HttpPeer()
    url = peer.url
    peer.close()
    with pytest.raises(RetryableError, match=f"cannot reach {url}: Connection refused"):
        via.send(http_action(url), {}, KEY)


def test_read_timeout_is_retryable(via: Via, http_peer: HttpPeer) -> None:
    http_peer.hold.clear()
    with pytest.raises(RetryableError, match="timed out calling"):
        via.send(http_action(http_peer.url, timeout=0.2), {}, KEY)


def test_destination_config_is_strict_and_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as failure:
        build_actions({"provisioning": {"type": "http", "base_url": "ftp://x", "timout": 3, "verify": "no",
                                        "retry": {"backoff_max": "soon"}}}, ActionContext(source="config.yaml"))
    assert failure.value.problems == [
        "config.yaml:0: destinations.provisioning.timout: unknown key (did you mean 'timeout'?); expected one of: "
        "base_url, allowed_hosts, headers, timeout, connect_timeout, max_response_bytes, ca_file, proxy, verify, "
        "type, retry",
        "config.yaml:0: destinations.provisioning.retry.backoff_max: expected a duration like 30s, 10m, 1h or 7d, "
        "got 'soon'",
        "config.yaml:0: destinations.provisioning.base_url: expected an absolute http:// or https:// URL",
        "config.yaml:0: destinations.provisioning.verify: expected true or false, got 'no'",
    ]


def test_verify_false_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="idhooks.actions"):
        http_action("https://127.0.0.1:9", verify=False)
    assert "verify: false - TLS certificates are NOT checked" in caplog.text


def test_rule_fields_checks() -> None:
    assert HttpAction.check_rule_fields({"json": {}, "body": "x", "method": "FETCH", "headers": {"Host": "x"},
                                         "query": ["a"], "retry": {"retry_for": "2h", "backof": 1}}) == [
        "retry.backof: unknown key (did you mean 'backoff_max'?); expected one of: retry_for, backoff_initial, "
        "backoff_max",
        "body: give json or body, not both",
        "method: expected one of GET, POST, PUT, PATCH, DELETE, got 'FETCH'",
        "query: expected a mapping of names to values",
        "headers.Host: this header is set by idhooks",
    ]


def test_connect_time_check_refuses_a_blocked_peer(via: Via, http_peer: HttpPeer) -> None:
    """What DNS rebinding would slip past the resolve check is refused on the connected socket itself
    (loopback stands in for the metadata range here, since nothing on this machine answers there)."""
    client = HttpClient(blocked_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    action = HttpAction("provisioning", {"type": "http", "base_url": http_peer.url}, ActionContext(http=client))
    with pytest.raises(PermanentError, match="refused: '127.0.0.1' connected to 127.0.0.1, a link-local/metadata"):
        via.send(action, {"path": "/users"}, KEY)
    assert http_peer.requests == []


def test_blocked_addresses() -> None:
    assert [str(blocked(a)) for a in ("169.254.169.254", "::ffff:169.254.169.254", "fe80::1%eth0", "fd00:ec2::254")] \
        == ["169.254.169.254", "169.254.169.254", "fe80::1", "fd00:ec2::254"]
    assert blocked("127.0.0.1") is None and blocked("10.0.0.1") is None


@pytest.mark.parametrize("path", ["/users/../admin", "/users/%2e%2e/admin", "..", "/a/./b"])
def test_dot_segments_from_event_data_are_refused(via: Via, http_peer: HttpPeer, path: str) -> None:
    with pytest.raises(PermanentError, match="'.' and '..' segments could leave the base path"):
        via.send(http_action(http_peer.url + "/api"), {"path": path}, KEY)
    assert http_peer.requests == []


def test_what_the_action_remembers_of_event_paths_stays_bounded(via: Via, http_peer: HttpPeer) -> None:
    """Rendered paths hold event text: the URLs kept for reuse (split, quoted, placed) are bounded in number and
    length, while every send still goes to its own path."""
    from actions import httpresult

    action = http_action(http_peer.url + "/api")
    long_paths = [f"/users/{n}-" + "x" * 10_000 for n in range(3)]
    for path in long_paths:
        via.send(action, {"method": "GET", "path": path}, KEY)
    assert [request.path for request in http_peer.requests] == ["/api" + path for path in long_paths]
    client = action.context.http
    kept = [*action._splits, *(url for url, _, _ in client._places), *httpresult._QUOTED]
    assert not any(len(url) > 10_000 for url in kept)  # checked and sent, not kept
    for n in range(3000):
        url = action.url_for(f"/users/{n}")
        client._place(url, True, None)
        httpresult.prepare(url, None, None, None, None)
    assert len(action._splits) <= 1024 and len(client._places) <= 1024 and len(httpresult._QUOTED) <= 1024
