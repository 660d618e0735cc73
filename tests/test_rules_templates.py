"""Action templates: the context names, missing fields, load-time typos, event data never executed,
json fields that stay plain JSON, and render-time failures that never fail the event."""

from __future__ import annotations

import json

from engine.catalog import alias_to_uri
from engine.verify.envelope import envelope_from_claims
from tests.conftest import sample_event
from tests.rules_support import decide, envelope, load


def render(tmp_path, message: str, alias: str = "login.loginFailed", **body) -> str:
    ruleset = load(tmp_path, f"""
        rules:
          - id: t
            description: the rule's description
            event: "*"
            actions:
              - log: {{message: {json.dumps(message)}}}
        """)
    decision = decide(ruleset, envelope(alias, **body))["t"]
    assert decision.matched and not decision.errors, decision
    return decision.actions[0].fields["message"]


def test_every_context_name_renders(tmp_path):
    message = ("{{ type }}|{{ uri }}|{{ rule.id }}: {{ rule.description }}|{{ username }}|{{ claims.username }}|"
               "{{ ip }}|{{ envelope.iss }}|{{ event.application.name }}|{{ occurred_at.tzname() }}|"
               "{{ claims['http://wso2.org/claims/username'] }}")
    assert render(tmp_path, message) == (
        f"login.loginFailed|{alias_to_uri('login.loginFailed')}|t: the rule's description|jane.doe@example.com|"
        f"jane.doe@example.com|198.51.100.23|https://api.asgardeo.io/t/acme|Customer Portal|UTC|"
        f"jane.doe@example.com")


def test_user_id_and_occurred_at_come_from_the_event(tmp_path):
    event = sample_event("user.userDisabled")
    event["iat"] = 1767604498120
    ruleset = load(tmp_path, 'rules:\n  - {id: t, event: "*", actions: [{log: {message: '
                             '"{{ user_id }} {{ occurred_at.isoformat() }}"}}]}\n')
    decision = decide(ruleset, envelope_from_claims(event))["t"]
    assert decision.actions[0].fields["message"] == \
        "7c1e4b2a-5d3f-4e8a-9b6c-0f2d1a3e5b7c 2026-01-05T09:14:58.120000+00:00"


def test_a_missing_field_renders_empty_or_its_default(tmp_path):
    assert render(tmp_path, "[{{ event.user.id }}][{{ user_id }}][{{ event.nope.deeper | default('n/a') }}]"
                            "[{{ claims.mobile | default('none') }}]") == "[][][n/a][none]"


def test_event_values_are_data_never_template_source(tmp_path):
    hostile = "{{ 7 * 7 }}{% for x in range(3) %}x{% endfor %}"
    assert render(tmp_path, "{{ event.application.name }}", application={"name": hostile}) == hostile


def test_tojson_is_plain_json(tmp_path):
    out = render(tmp_path, "{{ event.application | tojson }}", application={"name": "<A & B>"})
    assert json.loads(out) == {"name": "<A & B>"} and "<A & B>" in out


def test_the_sandbox_refuses_internals_without_failing_the_event(tmp_path):
    ruleset = load(tmp_path, """
        rules:
          - id: t
            event: "*"
            actions:
              - log: {message: "a{{ event.__class__.__mro__ }}b"}
              - log: {message: "{{ ''.__class__.__subclasses__() }}"}
              - log: {message: "ok"}
        """)
    decision = decide(ruleset, envelope())["t"]
    assert decision.matched
    assert [a.fields["message"] for a in decision.actions] == ["ab", "", "ok"]
    assert len(decision.errors) == 1 and decision.errors[0].startswith(
        "actions[1].log.message: template failed: SecurityError: ")
    assert decision.to_json()["errors"] == decision.errors
