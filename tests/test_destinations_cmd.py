"""`idhooks destinations list` and `idhooks destinations test NAME [--event ALIAS]` against loopback peers:
what is listed never includes a secret, a test renders a rule's action (or the type's test message) from a
catalog event, sends it for real and says whether a failure would be retried or dead-lettered."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from engine.cli import main
from tests.conftest import basic_config
from tests.peers import Response
from tests.service_peers import PagerDutyPeer, ScimPeer, SyslogPeer, TeamsPeer

PD_KEY = PagerDutyPeer.ROUTING_KEY


@pytest.fixture
def pd() -> Iterator[PagerDutyPeer]:
    peer = PagerDutyPeer()
    yield peer
    peer.close()


@pytest.fixture
def teams_peer() -> Iterator[TeamsPeer]:
    peer = TeamsPeer()
    yield peer
    peer.close()


def config(tmp_path: Path, destinations: str, rules: str = "") -> str:
    path = basic_config(tmp_path, extra=f"destinations:\n{destinations}")
    if rules:
        (tmp_path / "rules" / "rules.yaml").write_text(rules)
    return str(path)


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_list_shows_name_type_and_host_never_secrets(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_KEY", PD_KEY)
    monkeypatch.setenv("TEAMS_URL", "https://prod-42.westus.logic.azure.com/workflows/abc/invoke?sig=S3CRETSIG")
    monkeypatch.setenv("NATS_URL", "nats://bus-user:bus-pass-77@127.0.0.1:4222")
    path = config(tmp_path, '''
  oncall: {type: pagerduty, routing_key: "${PD_KEY}"}
  chat: {type: teams, webhook_url: "${TEAMS_URL}"}
  hooks: {type: http, base_url: "https://user.example.com:8443/api?token=T0KEN", headers: {X-Key: "${PD_KEY}"}}
  siem: {type: syslog, host: siem.example.com, port: 6514, protocol: tcp}
  bus: {type: nats, servers: ["${NATS_URL}"], subject: "idhooks.{{ type }}"}
''')
    code, out = run(capsys, "destinations", "list", "--config", path)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "TARGET"]
    assert [line.split() for line in lines[1:]] == [
        ["bus", "nats", "127.0.0.1:4222"], ["chat", "teams", "prod-42.westus.logic.azure.com"],
        ["hooks", "http", "user.example.com:8443"], ["oncall", "pagerduty", "events.pagerduty.com"],
        ["siem", "syslog", "siem.example.com:6514"]]
    for secret in (PD_KEY, "S3CRETSIG", "workflows", "T0KEN", "bus-pass-77", "bus-user"):
        assert secret not in out


def test_a_rules_action_is_rendered_from_the_catalog_and_sent(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                               pd: PagerDutyPeer) -> None:
    path = config(tmp_path, f'''
  oncall: {{type: pagerduty, routing_key: {PD_KEY}, url: "{pd.url}/v2/enqueue"}}
''', rules='''
rules:
  - id: lockout-page
    event: user.userAccountLocked
    actions:
      - log: {message: "locked"}
      - pagerduty: {to: oncall, summary: "{{ type }}: account locked", severity: critical}
''')
    code, out = run(capsys, "destinations", "test", "oncall", "--config", path)
    assert code == 0, out
    assert "rule 'lockout-page' action 1, rendered from the catalog sample of user.userAccountLocked" in out
    assert "answer: 202 Accepted" in out and "result: delivered" in out
    assert pd.requests[0].json()["payload"]["summary"] == "user.userAccountLocked: account locked"
    assert PD_KEY not in out


def test_without_a_rule_the_types_test_message_goes_out(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        teams_peer: TeamsPeer) -> None:
    path = config(tmp_path, f'''
  chat: {{type: teams, webhook_url: "{teams_peer.url}/workflows/1/triggers/manual?sig=SIG"}}
''')
    code, out = run(capsys, "destinations", "test", "chat", "--event", "login.loginFailed", "--config", path)
    assert code == 0, out
    assert "the teams test message, rendered from the catalog sample of login.loginFailed" in out
    card = teams_peer.requests[0].json()["attachments"][0]["content"]
    assert card["body"][1]["text"].startswith("login.loginFailed for ")


@pytest.mark.parametrize(("answer", "verdict"), [
    (Response(503, {"status": "unavailable"}, {"Retry-After": "30"}),
     "the worker would retry it (Retry-After 30s)"),
    (Response(400, {"status": "invalid event", "errors": ["bad"]}), "it would become a dead letter"),
])
def test_a_failure_says_whether_it_would_be_retried(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    pd: PagerDutyPeer, answer: Response, verdict: str) -> None:
    pd.script.append(answer)
    path = config(tmp_path, f'''
  oncall: {{type: pagerduty, routing_key: {PD_KEY}, url: "{pd.url}/v2/enqueue"}}
''')
    code, out = run(capsys, "destinations", "test", "oncall", "--config", path)
    assert code == 1
    assert f"answer: {answer.status}" in out and verdict in out and "answer body:" in out


def test_syslog_has_no_http_answer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    receiver = SyslogPeer("tcp")
    try:
        path = config(tmp_path, f'''
  siem: {{type: syslog, host: 127.0.0.1, port: {receiver.port}, protocol: tcp, format: cef}}
''')
        code, out = run(capsys, "destinations", "test", "siem", "--config", path)
        assert code == 0 and "result: delivered" in out
        assert "CEF:0|idhooks|idhooks|" in receiver.wait_for(1)[0]
    finally:
        receiver.close()


def test_an_action_needing_captured_values_says_it_would_be_a_dead_letter(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    scim = ScimPeer()
    try:
        path = config(tmp_path, f'''
  scim: {{type: http, base_url: "{scim.url}/scim/v2"}}
''', rules='''
rules:
  - id: scim-delete
    event: user.userDeleted
    actions:
      - http: {to: scim, ordered_by: "{{ user_id }}", method: DELETE, path: "/Users/{{ captured.scim_id }}"}
''')
        code, out = run(capsys, "destinations", "test", "scim", "--config", path)
        assert code == 1 and "captured.scim_id missing" in out and "dead letter" in out
        assert scim.requests == []
    finally:
        scim.close()


def test_unknown_names_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = config(tmp_path, "  log-only: {type: syslog, host: 127.0.0.1}\n")
    code, out = run(capsys, "destinations", "test", "nope", "--config", path)
    assert code == 2 and "no destination named 'nope'; configured: log-only" in out  # usage errors (issue 11)
    assert "usage: idhooks destinations test " in out
    code, out = run(capsys, "destinations", "test", "log-only", "--event", "login.nope", "--config", path)
    assert code == 2 and "unknown event 'login.nope'" in out
