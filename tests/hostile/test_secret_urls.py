"""Issue 12 item 14: every destination URL that can carry a credential is a secret. An inline Slack
`webhook_url`, an inline token or password, and the userinfo or query of any other destination URL are
never logged, stored with a job, or shown by a command: checked by grepping what each of them writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from actions import build_actions
from actions.base import ActionContext
from actions.http import HttpAction
from engine.config.settings import all_secrets, load_config
from engine.errors import ConfigError, PermanentError, RetryableError
from engine.secrets import Secret
from tests.conftest import ROOT, basic_config, free_port, sample_event, signed
from tests.peers import HttpPeer, Response, http_peer, slack_peer, SlackPeer  # noqa: F401 - fixtures

WEBHOOK_PATH = "/services/T0SECRET/B0SECRET/hook-7e2a9c41d"
TOKEN = "tok-9f8e7d6c5b"
PROXY_PASSWORD = "proxy-pa55-31f"
BOT_TOKEN = "xoxb-inline-4d2c"
SMTP_PASSWORD = "smtp-inline-8b1"
SECRETS = (WEBHOOK_PATH, "hook-7e2a9c41d", TOKEN, PROXY_PASSWORD, BOT_TOKEN, SMTP_PASSWORD)


def destinations(port: int) -> str:
    """config.yaml destinations with every credential written inline (the case the issue found)."""
    return f"""
destinations:
  security-slack: {{type: slack, webhook_url: "http://127.0.0.1:{port}{WEBHOOK_PATH}", timeout: 2}}
  security-bot: {{type: slack, token: {BOT_TOKEN}, channel: "#security", api_url: "http://127.0.0.1:{port}/api"}}
  hook: {{type: http, base_url: "http://127.0.0.1:{port}/trigger?token={TOKEN}", timeout: 2}}
  proxied: {{type: http, base_url: "http://127.0.0.1:{port}/x", proxy: "http://ops:{PROXY_PASSWORD}@127.0.0.1:{port}"}}
  mail: {{type: email, host: 127.0.0.1, port: {port}, from: idhooks@example.com, username: ops,
         password: {SMTP_PASSWORD}}}
"""


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows {secret!r}"


def test_inline_credentials_are_secrets_from_the_moment_config_is_read(tmp_path: Path) -> None:
    config = load_config(basic_config(tmp_path, extra=destinations(free_port())))
    assert isinstance(config.destinations["security-slack"]["webhook_url"], Secret)
    assert isinstance(config.destinations["security-bot"]["token"], Secret)
    assert isinstance(config.destinations["mail"]["password"], Secret)
    assert_no_secret(repr(config), "repr(config)")
    actions = build_actions(config.destinations, ActionContext())
    for secret in SECRETS:
        assert any(secret in s.reveal() for s in actions.secrets + all_secrets(config)), secret


def test_an_unreachable_inline_webhook_url_is_never_named(tmp_path: Path) -> None:
    config = load_config(basic_config(tmp_path, extra=destinations(free_port())))
    action = build_actions(config.destinations, ActionContext()).get("slack", "security-slack")
    with pytest.raises(RetryableError) as failure:
        action.send({"text": "hi"}, "k")
    assert str(failure.value) == "cannot reach ***: Connection refused"


def test_slack_answers_never_name_the_inline_webhook_url(tmp_path: Path, slack_peer: SlackPeer) -> None:
    config = load_config(basic_config(tmp_path, extra=destinations(slack_peer.port)))
    action = build_actions(config.destinations, ActionContext()).get("slack", "security-slack")
    slack_peer.script += [Response(404, f"no_service for {WEBHOOK_PATH}"), Response(500, "rollup_error")]
    for error in (PermanentError, RetryableError):
        with pytest.raises(error) as failure:
            action.send({"text": "hi"}, "k")
        assert_no_secret(str(failure.value) + failure.value.response_snippet, "the error")
    assert [r.path for r in slack_peer.requests] == [WEBHOOK_PATH] * 2  # and it was the URL called


def test_a_token_in_the_base_url_query_is_sent_and_never_shown(http_peer: HttpPeer) -> None:
    action = HttpAction("hook", {"type": "http", "base_url": f"{http_peer.url}/trigger?token={TOKEN}"},
                        ActionContext())
    action.send({"path": "/users", "query": {"a": "1"}}, "k")
    assert (http_peer.requests[0].path, http_peer.requests[0].query) == ("/trigger/users", {"token": [TOKEN],
                                                                                             "a": ["1"]})
    http_peer.script.append(Response(403, f"bad token {TOKEN}"))
    with pytest.raises(PermanentError) as failure:
        action.send({"path": "/users"}, "k")
    assert str(failure.value) == f"{http_peer.url}/trigger/users?*** answered 403: bad token ***"
    closed = free_port()
    action = HttpAction("hook", {"type": "http", "base_url": f"http://127.0.0.1:{closed}/t?token={TOKEN}"},
                        ActionContext())
    with pytest.raises(RetryableError, match=rf"^cannot reach http://127\.0\.0\.1:{closed}/t/u\?\*\*\*: "):
        action.send({"path": "u"}, "k")


def test_userinfo_in_a_url_is_never_shown() -> None:
    closed = free_port()
    action = HttpAction("proxied", {"type": "http", "base_url": f"http://127.0.0.1:{closed}/x",
                                    "proxy": f"http://ops:{PROXY_PASSWORD}@127.0.0.1:{closed}"}, ActionContext())
    with pytest.raises(RetryableError) as failure:
        action.send({"path": "y"}, "k")
    assert_no_secret(str(failure.value), "the error")
    with pytest.raises(ConfigError) as refused:
        HttpAction("creds", {"type": "http", "base_url": f"http://ops:{PROXY_PASSWORD}@127.0.0.1:{closed}/x"},
                   ActionContext())
    assert refused.value.problems == [
        "config.yaml:0: destinations.creds.base_url: a user:password@ in the URL is never sent; give credentials "
        'as a header (headers: {Authorization: "Basic ${ENV}"})']


def run(config: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "engine", *args, "--config", str(config)], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60, cwd=config.parent)
    return result.stdout + result.stderr


@pytest.mark.slow
def test_a_running_server_never_logs_stores_or_shows_a_credential(tmp_path: Path, serve) -> None:
    """The whole path: failed deliveries to every destination, then grep the log, the database files and
    the output of every command that shows jobs, events and config."""
    closed = free_port()
    rule = tmp_path / "rules" / "all.yaml"
    config = basic_config(tmp_path, extra=destinations(closed))
    rule.write_text("""rules:
  - id: every-channel
    event: login.loginFailed
    actions:
      - slack: {to: security-slack, text: "failed login {{ username }}"}
      - slack: {to: security-bot, text: "failed login {{ username }}"}
      - http: {to: hook, path: "/users/{{ username }}"}
      - http: {to: proxied, path: "/y"}
      - email: {to: mail, recipients: [security@example.com], subject: "failed login", text: "{{ username }}"}
""")
    server = serve(config)
    event = sample_event()
    body, headers = signed(event)
    assert requests.post(server.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10).status_code == 202
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = [json.loads(line) for line in run(config, "deliveries", "--json").splitlines() if line.startswith("{")]
        if len(jobs) == 5 and all(job.get("attempts") for job in jobs):
            break
        time.sleep(0.2)
    assert len(jobs) == 5 and all(job["last_error"] for job in jobs), jobs
    assert "cannot reach ***" in {job["destination"]: job["last_error"] for job in jobs}["security-slack"]
    shown = [run(config, *command) for command in (
        ["deliveries"], ["deliveries", "--json"], ["events", "list"], ["events", "show", event["jti"], "--json"],
        ["validate"], ["destinations", "list"], ["destinations", "test", "security-slack"],
        ["destinations", "test", "hook"], ["destinations", "test", "proxied"])]
    assert "cannot reach ***" in shown[6]  # `destinations test` sent for real, and names no credential
    server.stop()
    assert_no_secret(server.log(), "the server log")
    for output in shown:
        assert_no_secret(output, "a command")
    for path in (tmp_path / "var").iterdir():
        assert_no_secret(path.read_bytes().decode("utf-8", "replace"), str(path))


def test_only_urls_with_credentials_become_secrets(tmp_path: Path) -> None:
    config = load_config(basic_config(tmp_path, extra="""
destinations:
  bot: {type: slack, token: "${SLACK_TOKEN:-x}", channel: "#sec?urity", api_url: "https://slack.example.com/api"}
  target: {type: http, base_url: "https://api.example.com/v1", proxy: "http://proxy.example.com:3128"}
"""))
    assert config.destinations["bot"]["channel"] == "#sec?urity"  # text with a '?' is not a URL
    assert config.destinations["bot"]["api_url"] == "https://slack.example.com/api"
    assert config.destinations["target"]["proxy"] == "http://proxy.example.com:3128"
    build_actions(config.destinations, ActionContext())  # and every value is accepted where it is read
