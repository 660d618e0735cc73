"""Every load error, with its exact text: file:line: rule 'id': field.path: what was wrong (suggestion).
All problems of all files are reported at once."""

from __future__ import annotations

import pytest

from actions import registry
from engine.errors import ConfigError
from engine.match import load_ruleset
from tests.rules_support import decide, envelope, load, problems, rule_with, write_rules

ACTION_TYPES = ", ".join(sorted(registry()))

OPS = ("equals, not_equals, in, not_in, contains, not_contains, starts_with, ends_with, matches, exists, gt, gte, "
       "lt, lte")


def test_unknown_operator_suggests_the_close_one(tmp_path):
    assert problems(tmp_path, rule_with("all:\n  - {path: $.application.name, equal: Console}")) == [
        f"rules.yaml:6: rule 'r': when.all[0]: unknown operator 'equal' (did you mean 'equals'?); "
        f"expected one of: {OPS}"]


@pytest.mark.parametrize("when, expected", [
    ("{path: $.a, equals: 1, in: [1]}", "rules.yaml:5: rule 'r': when: give exactly one operator, got equals and in"),
    ("{path: $.a}", f"rules.yaml:5: rule 'r': when: missing operator: give one of {OPS}"),
    ("{path: $.a, claim: x, exists: true}", "rules.yaml:5: rule 'r': when: give one of path, claim or envelope, "
                                            "got path and claim"),
    ("{path: 'a.b', exists: true}", "rules.yaml:5: rule 'r': when.path: expected a JSONPath starting with '$', "
                                    "got 'a.b'"),
    ("{path: '$.a[', exists: true}", "rules.yaml:5: rule 'r': when.path: invalid JSONPath '$.a[': Parse error "
                                     "near the end of string!"),
    ("{claim: '', exists: true}", "rules.yaml:5: rule 'r': when.claim: expected a claim name like username or "
                                  "a claim URI"),
    ("{path: $.a, matches: '(['}", "rules.yaml:5: rule 'r': when.matches: invalid regular expression: "
                                   "unterminated character set at position 1"),
    ("{path: $.a, gt: '3'}", "rules.yaml:5: rule 'r': when.gt: expected a number"),
    ("{path: $.a, in: []}", "rules.yaml:5: rule 'r': when.in: expected a non-empty list of strings, numbers "
                            "or true/false"),
    ("{path: $.a, in: Console}", "rules.yaml:5: rule 'r': when.in: expected a non-empty list of strings, "
                                 "numbers or true/false"),
    ("{path: $.a, equals: [1]}", "rules.yaml:5: rule 'r': when.equals: expected a string, number or true/false"),
    ("{path: $.a, starts_with: 1}", "rules.yaml:5: rule 'r': when.starts_with: expected a string"),
    ("{path: $.a, exists: yes please}", "rules.yaml:5: rule 'r': when.exists: expected true or false"),
    ("{path: $.a, gt: 1, ignore_case: true}", "rules.yaml:5: rule 'r': when.ignore_case: ignore_case does not "
                                              "apply to gt"),
    ("{path: $.a, equals: x, ignore_case: 1}", "rules.yaml:5: rule 'r': when.ignore_case: expected true or false"),
    ("actoin: LOGIN", "rules.yaml:5: rule 'r': when: unknown condition key 'actoin' (did you mean 'action'?); "
                      "expected one of: all, any, not, initiatorType, action, credentialType, initiatorIpAddress, "
                      "path, claim, envelope"),
    ("all: []", "rules.yaml:5: rule 'r': when.all: expected a non-empty list of conditions"),
    ("any: {initiatorType: USER}", "rules.yaml:5: rule 'r': when.any: expected a non-empty list of conditions"),
    ("not: [x]", "rules.yaml:5: rule 'r': when.not: expected a mapping of conditions (path/claim/envelope with "
                 "an operator, all, any, not, or initiatorType, action, credentialType, initiatorIpAddress)"),
    ("action: {equal: X}", f"rules.yaml:5: rule 'r': when.action: unknown operator 'equal' (did you mean "
                           f"'equals'?); expected one of: {OPS}"),
])
def test_condition_errors(tmp_path, when, expected):
    assert problems(tmp_path, rule_with(when)) == [expected]


RULE_ERRORS = """
rules:
  - id: Bad_Id
    event: login.loginFailed
    actions: [{log: {message: x}}]
  - id: ok-rule
    event: login.loginFaild
    actions: [{log: {message: x}}]
  - id: ok-rule
    event: [user.*, "lgin.*"]
    webhooks: [asgardeoo]
    enabled: sometimes
    descripton: typo
    actions: []
  - event: "*"
    actions:
      - pager: {message: x}
      - log: {mesage: "{{ evnt }}"}
      - log: {message: "{{ evnt }}"}
      - log: {message: "{{ event.x "}
      - log: x
      - log: {message: }
      - log: {message: [a]}
  - just a string
"""


def test_rule_errors_are_all_reported_in_line_order_with_ids_and_suggestions(tmp_path):
    assert problems(tmp_path, RULE_ERRORS) == [
        "rules.yaml:2: rule 'Bad_Id': id: expected lowercase letters, digits and '-', got 'Bad_Id'",
        "rules.yaml:6: rule 'ok-rule': event: unknown event 'login.loginFaild' (did you mean 'login.loginFailed'?);"
        " `idhooks catalog` lists the aliases",
        "rules.yaml:8: rule 'ok-rule': id: duplicate rule id (first defined at rules.yaml:5)",
        "rules.yaml:9: rule 'ok-rule': event[1]: unknown channel 'lgin' (did you mean 'login'?); channels: "
        "consent, consent-purpose, credential, login, registration, role, session, token, user",
        "rules.yaml:10: rule 'ok-rule': webhooks: unknown webhook 'asgardeoo' (did you mean 'asgardeo'?); "
        "configured webhooks: asgardeo",
        "rules.yaml:11: rule 'ok-rule': enabled: expected true or false, got 'sometimes'",
        "rules.yaml:12: rule 'ok-rule': descripton: unknown rule key (did you mean 'description'?); expected one "
        "of: id, description, enabled, mode, event, webhooks, when, actions, threshold, suppress, digest, sequence, "
        "new_value, absence",
        "rules.yaml:13: rule 'ok-rule': actions: expected a non-empty list of actions, like `- log: {message: ...}`",
        "rules.yaml:14: rules[3]: id: missing: every rule needs a unique id of lowercase letters, digits and '-'",
        f"rules.yaml:16: rules[3]: actions[0]: unknown action type 'pager' (did you mean 'pagerduty'?); action types: {ACTION_TYPES}",
        "rules.yaml:17: rules[3]: actions[1].log.mesage: unknown field (did you mean 'message'?); log takes: message, ordered_by",
        "rules.yaml:17: rules[3]: actions[1].log.message: missing required field (the line to log)",
        "rules.yaml:18: rules[3]: actions[2].log.message: unknown template name 'evnt' (did you mean 'event'?); "
        "available: event, envelope, uri, type, rule, claims, user_id, username, ip, occurred_at, geo, captured",
        "rules.yaml:19: rules[3]: actions[3].log.message: invalid template (line 1 of the template): unexpected "
        "end of template, expected 'end of print statement'.",
        "rules.yaml:20: rules[3]: actions[4].log: expected a mapping of fields: message",
        "rules.yaml:21: rules[3]: actions[5].log.message: expected text (a template string)",
        "rules.yaml:22: rules[3]: actions[6].log.message: expected text (a template string)",
        "rules.yaml:23: rules[4]: expected a mapping with id, event and actions",
    ]


def test_file_level_errors_from_every_file_are_reported_together(tmp_path):
    write_rules(tmp_path, "rules: [\n", "a.yaml")
    write_rules(tmp_path, "rule:\n  - id: x\n", "b.yml")
    write_rules(tmp_path, "- id: x\n", "c.yaml")
    write_rules(tmp_path, "not a rule file", "notes.txt")
    with pytest.raises(ConfigError) as caught:
        load_ruleset([tmp_path, tmp_path / "missing"], destinations={})
    assert [p.replace(f"{tmp_path}/", "") for p in caught.value.problems] == [
        "missing: no such rule file or folder",
        "a.yaml:2: invalid YAML: did not find expected node content",
        "b.yml:1: rule: unknown key (did you mean 'rules'?); a rule file holds only `rules:`",
        "c.yaml:1: expected a mapping with `rules:` (a list of rules)",
    ]


def test_a_missing_event_and_a_non_mapping_when_are_errors(tmp_path):
    assert problems(tmp_path, "rules:\n  - id: x\n    when: [1]\n    actions: [{log: {message: m}}]\n") == [
        "rules.yaml:2: rule 'x': event: missing: give an alias like login.loginFailed, a channel wildcard like "
        "login.*, '*', a full event URI, or a list of these",
        "rules.yaml:3: rule 'x': when: expected a mapping of conditions (path/claim/envelope with an operator, all, "
        "any, not, or initiatorType, action, credentialType, initiatorIpAddress)",
    ]


def test_an_empty_file_and_an_empty_folder_load_no_rules(tmp_path):
    write_rules(tmp_path, "", "empty.yaml")
    assert load_ruleset([tmp_path], destinations={}).rules == []


DESTINATIONS = {"provisioning": {"type": "http", "base_url": "http://127.0.0.1:9/scim2"},
                "chat": {"type": "slack", "webhook_url": "http://127.0.0.1:9/hook"}}


def http_rule(to: str, extra: str = "") -> str:
    return f"""
        rules:
          - id: provision
            event: registration.registrationSuccess
            actions:
              - http:
                  to: {to}
                  method: POST
                  path: /Users
                  json:
                    userName: "{{{{ username }}}}"
                    emails: [{{value: "{{{{ claims.emailaddress }}}}", primary: true}}]
                    active: true{extra}
        """


def test_a_destination_must_exist_and_have_the_action_s_type(tmp_path):
    assert problems(tmp_path, http_rule("provisoning"), destinations=DESTINATIONS) == [
        "rules.yaml:6: rule 'provision': actions[0].http.to: unknown destination 'provisoning' (did you mean "
        "'provisioning'?); configured destinations: chat, provisioning"]
    assert problems(tmp_path, http_rule("chat"), destinations=DESTINATIONS) == [
        "rules.yaml:6: rule 'provision': actions[0].http.to: destination 'chat' has type 'slack', but a http action "
        "needs a destination of type 'http'"]
    assert problems(tmp_path, http_rule("provisioning"), destinations={}) == [
        "rules.yaml:6: rule 'provision': actions[0].http.to: unknown destination 'provisioning'; configured "
        "destinations: none (add one under destinations: in config.yaml)"]


def test_an_action_class_s_own_field_checks_are_reported(tmp_path):
    found = problems(tmp_path, http_rule("provisioning", "\n                  body: raw"),
                     destinations=DESTINATIONS)
    assert found == ["rules.yaml:6: rule 'provision': actions[0].http: body: give json or body, not both"]


def test_json_fields_render_to_plain_json_with_the_destination(tmp_path):
    ruleset = load(tmp_path, http_rule("provisioning"), destinations=DESTINATIONS)
    action = decide(ruleset, envelope("registration.registrationSuccess"))["provision"].actions[0]
    assert (action.index, action.type, action.destination) == (0, "http", "provisioning")
    assert action.fields == {"to": "provisioning", "method": "POST", "path": "/Users", "json": {
        "userName": "jane.doe@example.com", "emails": [{"value": "jane.doe@example.com", "primary": True}],
        "active": True}}
