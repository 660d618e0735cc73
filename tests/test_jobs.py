"""Typed jobs: a matched rule's rendered action becomes one NewJob with every field the worker needs."""

from __future__ import annotations

from pathlib import Path

from engine.match.jobs import jobs_for
from tests.rules_support import decide, envelope, load

RULES = """
rules:
  - id: notify
    event: login.loginFailed
    actions:
      - slack: {to: ops, text: "failed login of {{ username }}", retry: {retry_for: 2h}}
      - log: {message: seen}
"""
DESTINATIONS = {"ops": {"type": "slack", "webhook_url": "https://hooks.example.com/x"}}


def test_a_rule_retry_override_is_the_job_retry_field_not_part_of_the_message(tmp_path: Path) -> None:
    env = envelope("login.loginFailed")
    decision = decide(load(tmp_path, RULES, destinations=DESTINATIONS), env)["notify"]
    slack, log = jobs_for(env.jti, 1_800_000_000.0, decision)
    assert (slack.key, slack.destination, slack.action, slack.rule, slack.jti, slack.index) == \
        (f"{env.jti}:notify:0", "ops", "slack", "notify", env.jti, 0)
    assert slack.retry == {"retry_for": "2h"}
    assert "retry" not in slack.message and slack.message["text"].startswith("failed login of ")
    assert (log.key, log.destination, log.action, log.message, log.retry, log.received_at) == \
        (f"{env.jti}:notify:1", "", "log", {"message": "seen"}, None, 1_800_000_000.0)
