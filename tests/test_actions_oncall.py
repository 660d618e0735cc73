"""pagerduty, opsgenie and teams against loopback servers speaking the Events API v2, the Alert API v2 and
a Teams Workflows webhook, including event text chosen by an attacker and peers that never answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from actions import build_actions
from actions.base import ActionContext
from actions.opsgenie import OpsgenieAction
from actions.pagerduty import PagerDutyAction
from actions.teams import TeamsAction
from engine.errors import ConfigError, PermanentError, RetryableError
from engine.secrets import Secret
from tests.peers import Response
from tests.rules_support import decide, envelope, load
from tests.lane_support import Via, via  # noqa: F401 - fixture
from tests.service_peers import OpsgeniePeer, PagerDutyPeer, TeamsPeer

KEY = "jti-1:failed-login:0"
HOSTILE = "<b>x</b>\r\nX-Injected: 1\n\"quote\" \\ \x00\x1b[31m \ud800 **bold** [link](http://evil.example) " + "A" * 5000


@pytest.fixture
def pd() -> Iterator[PagerDutyPeer]:
    peer = PagerDutyPeer()
    yield peer
    peer.close()


@pytest.fixture
def genie() -> Iterator[OpsgeniePeer]:
    peer = OpsgeniePeer()
    yield peer
    peer.close()


@pytest.fixture
def teams_peer() -> Iterator[TeamsPeer]:
    peer = TeamsPeer()
    yield peer
    peer.close()


def pagerduty(peer: PagerDutyPeer, key: str = PagerDutyPeer.ROUTING_KEY, **extra: object) -> PagerDutyAction:
    destination = {"type": "pagerduty", "routing_key": Secret(key, "PD_KEY"), "url": f"{peer.url}/v2/enqueue",
                   **extra}
    return PagerDutyAction("oncall", destination, ActionContext())


def opsgenie(peer: OpsgeniePeer, key: str = OpsgeniePeer.API_KEY, **extra: object) -> OpsgenieAction:
    return OpsgenieAction("genie", {"type": "opsgenie", "api_key": Secret(key), "url": f"{peer.url}/v2/alerts",
                                    **extra}, ActionContext())


def teams(peer: TeamsPeer, **extra: object) -> TeamsAction:
    url = Secret(f"{peer.url}/workflows/8f2c/triggers/manual/paths/invoke?sig=s3cr3tsig", "TEAMS_URL")
    return TeamsAction("chat", {"type": "teams", "webhook_url": url, **extra}, ActionContext())


# -- pagerduty -------------------------------------------------------------------------------------
def test_pagerduty_trigger_then_resolve_one_incident(via: Via, pd: PagerDutyPeer) -> None:
    action = pagerduty(pd)
    via.send(action, {"summary": "alice locked out", "severity": "critical", "component": "login",
                 "custom_details": {"ip": "203.0.113.9"}}, KEY)
    assert pd.incidents == {KEY: "triggered"}  # dedup_key defaults to the idempotency key
    payload = pd.requests[0].json()["payload"]
    assert payload == {"summary": "alice locked out", "severity": "critical", "source": "idhooks",
                       "component": "login", "custom_details": {"ip": "203.0.113.9"}}
    via.send(action, {"event_action": "resolve", "dedup_key": KEY}, "other-key")
    assert pd.incidents == {KEY: "resolved"}
    assert pd.requests[1].json() == {"routing_key": PagerDutyPeer.ROUTING_KEY, "event_action": "resolve",
                                     "dedup_key": KEY}


def test_pagerduty_retry_sends_the_same_dedup_key(via: Via, pd: PagerDutyPeer) -> None:
    pd.fail_first(1, 502)
    action = pagerduty(pd)
    with pytest.raises(RetryableError, match="answered 502"):
        via.send(action, {"summary": "s"}, KEY)
    via.send(action, {"summary": "s"}, KEY)
    assert [r.json()["dedup_key"] for r in pd.requests] == [KEY, KEY]
    assert pd.incidents == {KEY: "triggered"}


def test_pagerduty_wrong_routing_key_is_permanent_and_never_shown(via: Via, pd: PagerDutyPeer) -> None:
    wrong = "WRONGKEY0000000000000000000000ff"
    with pytest.raises(PermanentError, match="answered 400") as failure:
        via.send(pagerduty(pd, key=wrong), {"summary": "s"}, KEY)
    assert wrong not in str(failure.value) and wrong not in failure.value.response_snippet
    assert "routing_key" in failure.value.response_snippet


def test_pagerduty_rate_limit_honours_retry_after(via: Via, pd: PagerDutyPeer) -> None:
    pd.script.append(Response(429, {"status": "throttle event"}, {"Retry-After": "17"}))
    with pytest.raises(RetryableError) as failure:
        via.send(pagerduty(pd), {"summary": "s"}, KEY)
    assert failure.value.retry_after == 17


def test_pagerduty_rendered_severity_outside_the_contract_is_permanent(via: Via, pd: PagerDutyPeer) -> None:
    with pytest.raises(PermanentError, match="severity 'fatal' is not one of"):
        via.send(pagerduty(pd), {"summary": "s", "severity": "fatal"}, KEY)
    assert pd.requests == []


def test_pagerduty_hostile_text_stays_data(via: Via, pd: PagerDutyPeer) -> None:
    via.send(pagerduty(pd), {"summary": HOSTILE, "source": HOSTILE, "custom_details": {"x": HOSTILE, HOSTILE: 1.5}},
                       KEY)
    [request] = pd.requests
    body = request.body.decode("utf-8")  # strict UTF-8: the lone surrogate became U+FFFD
    payload = json.loads(body)["payload"]
    assert payload["summary"] == HOSTILE.replace("\ud800", "\ufffd")[:1024]
    assert payload["custom_details"]["x"].startswith("<b>x</b>\r\nX-Injected")
    assert "X-Injected" not in request.headers


def test_pagerduty_slow_peer_hits_the_deadline(via: Via, pd: PagerDutyPeer) -> None:
    pd.hold.clear()
    with pytest.raises(RetryableError, match="timed out"):
        via.send(pagerduty(pd, timeout=0.3), {"summary": "s"}, KEY)


def test_pagerduty_config_and_rule_errors() -> None:
    with pytest.raises(ConfigError, match=r"destinations.oncall: missing required key 'routing_key'"):
        build_actions({"oncall": {"type": "pagerduty"}}, ActionContext())
    assert PagerDutyAction.check_rule_fields({"severity": "fatal"}) == [
        "severity: expected one of critical, error, warning, info, got 'fatal'",
        "summary: a trigger needs a summary"]
    assert PagerDutyAction.check_rule_fields({"event_action": "resolve"}) == []


# -- opsgenie --------------------------------------------------------------------------------------
def test_opsgenie_create_and_close_by_alias(via: Via, genie: OpsgeniePeer) -> None:
    action = opsgenie(genie)
    via.send(action, {"message": "alice locked out", "priority": "p1", "tags": ["login", ""], "details": {"n": 3},
                 "description": "d"}, KEY)
    assert genie.alerts[KEY]["priority"] == "P1"
    assert genie.alerts[KEY]["details"] == {"n": "3"} and genie.alerts[KEY]["tags"] == ["login"]
    via.send(action, {"close": True}, KEY)
    assert genie.alerts == {}
    assert genie.requests[1].path == f"/v2/alerts/{KEY.replace(':', '%3A')}/close"


def test_opsgenie_hostile_alias_cannot_leave_the_close_path(via: Via, genie: OpsgeniePeer) -> None:
    via.send(opsgenie(genie), {"close": True, "alias": "../../v2/heartbeats/x?identifierType=id#"}, KEY)
    [request] = genie.requests
    assert request.path.startswith("/v2/alerts/..%2F..%2Fv2%2Fheartbeats") and request.path.endswith("/close")
    assert request.query == {"identifierType": ["alias"]}


def test_opsgenie_message_is_cut_to_the_limit_and_one_line(via: Via, genie: OpsgeniePeer) -> None:
    via.send(opsgenie(genie), {"message": HOSTILE, "tags": [HOSTILE] * 30, "details": {"big": "x" * 20000}}, KEY)
    alert = genie.alerts[KEY]
    assert len(alert["message"]) == 130 and "\n" not in alert["message"] and "\r" not in alert["message"]
    assert len(alert["tags"]) == 20 and all(len(t) <= 50 for t in alert["tags"])
    assert len(alert["details"]["big"]) <= 8000


@pytest.mark.parametrize(("answer", "error"), [
    (Response(401, {"message": "Key format is not valid!"}), PermanentError),
    (Response(422, {"message": "not processable"}), PermanentError),
    (Response(429, {"message": "rate limited"}, {"Retry-After": "3"}), RetryableError),
    (Response(503, {"message": "down"}), RetryableError),
])
def test_opsgenie_answers_are_classified(via: Via, genie: OpsgeniePeer, answer: Response, error: type) -> None:
    genie.script.append(answer)
    with pytest.raises(error):
        via.send(opsgenie(genie), {"message": "m"}, KEY)


def test_opsgenie_wrong_key_is_permanent_and_never_shown(via: Via, genie: OpsgeniePeer) -> None:
    with pytest.raises(PermanentError, match="answered 401") as failure:
        via.send(opsgenie(genie, key="bad-key-123"), {"message": "m"}, KEY)
    assert "bad-key-123" not in str(failure.value)


def test_opsgenie_slow_peer_hits_the_deadline(via: Via, genie: OpsgeniePeer) -> None:
    genie.hold.clear()
    with pytest.raises(RetryableError, match="timed out"):
        via.send(opsgenie(genie, timeout=0.3), {"message": "m"}, KEY)


def test_opsgenie_rule_errors() -> None:
    assert OpsgenieAction.check_rule_fields({"priority": "P9"}) == [
        "priority: expected one of p1, p2, p3, p4, p5, got 'P9'", "message: creating an alert needs a message"]
    assert OpsgenieAction.check_rule_fields({"close": "yes"}) == ["close: expected true or false, got 'yes'"]


# -- teams -----------------------------------------------------------------------------------------
def test_teams_posts_an_adaptive_card(via: Via, teams_peer: TeamsPeer) -> None:
    via.send(teams(teams_peer), {"title": "Account locked", "text": "alice", "facts": {"IP": "203.0.113.9"},
                            "link": "https://console.example.com/users/1"}, KEY)
    [request] = teams_peer.requests
    card = request.json()["attachments"][0]["content"]
    assert [b["type"] for b in card["body"]] == ["TextBlock", "TextBlock", "FactSet"]
    assert card["body"][2]["facts"] == [{"title": "IP", "value": "203.0.113.9"}]
    assert card["actions"][0]["url"] == "https://console.example.com/users/1"


def test_teams_event_markdown_stays_text_while_the_rules_own_markdown_works(via: Via, teams_peer: TeamsPeer,
                                                                          tmp_path: Path) -> None:
    ruleset = load(tmp_path, """
        rules:
          - id: to-teams
            event: login.loginFailed
            actions:
              - teams: {to: chat, title: "**Login failed**", text: "by {{ event.note }}", facts: {who: "{{ event.who }}"}}
        """, destinations={"chat": {"type": "teams"}})
    env = envelope(note="[click](http://evil.example) **x** <at>all</at>\n- item", who="*y*\x00")
    [rendered] = decide(ruleset, env)["to-teams"].actions
    via.send(teams(teams_peer), rendered.fields, KEY)
    card = teams_peer.requests[0].json()["attachments"][0]["content"]
    assert card["body"][0]["text"] == "**Login failed**"
    assert card["body"][1]["text"] == ("by \\[click\\]\\(http://evil.example\\) \\*\\*x\\*\\* "
                                       "\\<at\\>all\\</at\\>\n\\- item")
    assert card["body"][2]["facts"][0]["value"] == "\\*y\\*"


def test_teams_link_must_be_http(via: Via, teams_peer: TeamsPeer) -> None:
    with pytest.raises(PermanentError, match="not an absolute http"):
        via.send(teams(teams_peer), {"text": "x", "link": "javascript:alert(1)"}, KEY)
    assert teams_peer.requests == []


@pytest.mark.parametrize(("answer", "error"), [
    (Response(400, {"error": {"code": "InvalidRequestContent"}}), PermanentError),
    (Response(404, {"error": {"code": "TriggerNotFound"}}), PermanentError),
    (Response(429, b"", {"Retry-After": "9"}), RetryableError),
    (Response(502, b"bad gateway"), RetryableError),
])
def test_teams_answers_are_classified_and_the_url_never_shown(via: Via, teams_peer: TeamsPeer, answer: Response,
                                                              error: type) -> None:
    teams_peer.script.append(answer)
    with pytest.raises(error) as failure:
        via.send(teams(teams_peer), {"text": "x"}, KEY)
    assert "s3cr3tsig" not in str(failure.value) and "/workflows/" not in str(failure.value)


def test_teams_slow_peer_hits_the_deadline(via: Via, teams_peer: TeamsPeer) -> None:
    teams_peer.hold.clear()
    with pytest.raises(RetryableError, match=r"timed out calling \*\*\*"):
        via.send(teams(teams_peer, timeout=0.3), {"text": "x"}, KEY)


def test_teams_huge_and_control_text_is_bounded(via: Via, teams_peer: TeamsPeer) -> None:
    via.send(teams(teams_peer), {"title": HOSTILE, "text": "\x00\x07" + "y" * 100_000}, KEY)
    body = teams_peer.requests[0].json()["attachments"][0]["content"]["body"]
    assert len(body[0]["text"]) < 1000 and body[1]["text"].startswith("yyy") and len(body[1]["text"]) == 20_000
