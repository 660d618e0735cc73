"""Issue 12 item 10: event values in a templated HTTP path are one percent-encoded segment, query values
are encoded as query values, and a call can only go to the destination's scheme, host and port."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actions.base import ActionContext, fold_line
from actions.http import HttpAction
from engine.errors import PermanentError
from engine.match import RuleSet
from tests.hostile.channels import FIELDS, HOSTILE, PROPERTY, as_sent, compile_rule, genuine_values, \
    hostile_event, render
from tests.peers import HttpPeer, Request, http_peer  # noqa: F401 - fixture

ACTION = """\
      - http:
          to: directory
          method: PUT
          path: "/users/{{ user_id }}/roles"
          query: {q: "{{ username }}", app: "{{ event.application.name }}"}
          headers: {X-Tenant: "{{ event.tenant.name }}"}
          json: {reason: "{{ event.reason.description }}", ip: "{{ ip }}"}
"""
DESTINATION = {"directory": {"type": "http", "base_url": "http://127.0.0.1/api"}}


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return compile_rule(tmp_path_factory.mktemp("rules"), ACTION, DESTINATION)


@pytest.fixture
def trap() -> Iterator[HttpPeer]:
    """Another service on loopback (like Redis on 6379) that no call may reach."""
    peer = HttpPeer()
    yield peer
    peer.close()


def action_for(peer: HttpPeer, **extra: object) -> HttpAction:
    return HttpAction("directory", {"type": "http", "base_url": peer.url + "/api", **extra}, ActionContext())


def leaves_base_path(value: str) -> bool:
    """Whether some amount of percent-decoding turns `value` into a '.' or '..' segment."""
    for _ in range(8):
        value = unquote(value)
    return any(part in (".", "..") for part in re.split(r"[/\\]", value))


def call(ruleset: RuleSet, peer: HttpPeer, field: str, value: str) -> Request | None:
    """Render for an event with `value` in `field` and send; the one request received, None when refused."""
    before = len(peer.requests)
    try:
        action_for(peer).send(render(ruleset, hostile_event(field, value)), "jti:hostile:0")
    except PermanentError as refused:
        assert str(refused).startswith("refused path '/users/")
        assert len(peer.requests) == before
        return None
    requests = peer.wait_for(before + 1)
    assert len(requests) == before + 1
    return requests[-1]


@pytest.mark.parametrize("user_id", ["abc?admin=1&x=", "a#frag", "abc/delete", "%2561bc", "a b\r\nX-Admin: 1",
                                     "http://localhost:6379/", "//evil.example/x", "..a", "\ud800"])
def test_a_user_id_is_one_path_segment(ruleset: RuleSet, http_peer: HttpPeer, user_id: str) -> None:
    request = call(ruleset, http_peer, "user_id", user_id)
    assert request is not None
    prefix, segment, suffix = request.path.split("/users/")[0], *request.path.split("/users/")[1].split("/", 1)
    assert (prefix, suffix, request.method) == ("/api", "roles", "PUT")
    assert unquote(segment) == as_sent(user_id)
    assert request.query == {"q": ["jane.doe@example.com"], "app": ["Customer Portal"]}


@pytest.mark.parametrize("user_id", ["..", ".", "%2e%2e", "%252e%252e/x", "../../admin", "%25252e%25252E/x", "\\..\\x",
                                     ""])
def test_dot_segments_and_empty_segments_are_refused_whatever_their_encoding(
        ruleset: RuleSet, http_peer: HttpPeer, user_id: str) -> None:
    with pytest.raises(PermanentError, match=r"^refused path '/users/"):
        action_for(http_peer).send(render(ruleset, hostile_event("user_id", user_id)), "k")
    assert http_peer.requests == []


def test_query_values_stay_query_values(ruleset: RuleSet, http_peer: HttpPeer) -> None:
    request = call(ruleset, http_peer, "username", "x&admin=1#frag ?q=2+3%26")
    assert request is not None and request.query == {"q": ["x&admin=1#frag ?q=2+3%26"], "app": ["Customer Portal"]}


def test_an_absolute_url_is_checked_by_scheme_host_and_port(tmp_path: Path, http_peer: HttpPeer,
                                                            trap: HttpPeer) -> None:
    """A rule's own absolute URL may call an allowed origin; event data never picks the port."""
    ruleset = compile_rule(tmp_path, f"""\
      - http: {{to: directory, path: "http://127.0.0.1:{trap.port}/{{{{ user_id }}}}"}}
""", DESTINATION)
    with pytest.raises(PermanentError, match=rf"refused URL 'http://127.0.0.1:{trap.port}/abc': the destination "
                                             rf"'directory' allows only http:// to 127.0.0.1:{http_peer.port}"):
        action_for(http_peer).send(render(ruleset, hostile_event("user_id", "abc")), "k")
    for other in ("localhost:6379", f"localhost:{trap.port}", "127.0.0.1"):
        with pytest.raises(PermanentError, match="refused URL"):
            action_for(http_peer, allowed_hosts=[other]).send(render(ruleset, hostile_event("user_id", "a")), "k")
    action_for(http_peer, allowed_hosts=[f"127.0.0.1:{trap.port}"]).send(
        render(ruleset, hostile_event("user_id", "ok")), "k")
    assert [r.path for r in trap.requests] == ["/ok"] and http_peer.requests == []


@PROPERTY
@given(field=st.sampled_from(sorted(FIELDS)), value=HOSTILE)
def test_any_event_value_in_any_field_goes_only_where_the_rule_says(
        ruleset: RuleSet, http_peer: HttpPeer, trap: HttpPeer, field: str, value: str) -> None:
    v = {k: as_sent(x) for k, x in {**genuine_values(), field: value}.items()}
    request = call(ruleset, http_peer, field, value)
    if request is None:  # refused: only ever for a value that would leave or blur the base path
        assert field == "user_id" and (leaves_base_path(v["user_id"]) or v["user_id"] == "")
        return
    assert trap.requests == []
    head, _, tail = request.path.partition("/api/users/")
    segment, _, rest = tail.partition("/")
    assert (head, rest, request.method) == ("", "roles", "PUT")
    assert unquote(segment, errors="strict") == v["user_id"]
    assert request.query == {k: [x] for k, x in (("q", v["username"]), ("app", v["application"])) if x}
    assert json.loads(request.body) == {"reason": v["reason"], "ip": v["ip"]}
    received = request.headers.get("X-Tenant", "").encode("latin-1").decode("utf-8")
    assert received == fold_line(v["tenant"]).strip()
    assert {name.lower() for name in request.headers} <= {
        "host", "user-agent", "accept-encoding", "accept", "connection", "content-length", "content-type",
        "idempotency-key", "x-tenant"}  # nothing added by a value
