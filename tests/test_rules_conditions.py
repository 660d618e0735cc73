"""Operators, combinators, subjects (path, claim, envelope, shortcuts) and event selectors, evaluated on
catalog samples through the same RuleSet.evaluate the live engine uses."""

from __future__ import annotations

import pytest

from engine.catalog import alias_to_uri
from engine.verify.envelope import envelope_from_claims
from tests.conftest import sample_event
from tests.rules_support import decide, envelope, load, rule_with

# (when, body overrides of a login.loginFailed sample, expected to match)
CASES = [
    ("initiatorType: USER", {}, True),
    ("initiatorType: ADMIN", {}, False),
    ("action: [LOGIN, REGISTER]", {}, True),
    ("action: {not_in: [LOGIN]}", {}, False),
    ("{path: $.application.name, equals: Customer Portal}", {}, True),
    ("{path: $.application.name, equals: customer portal}", {}, False),
    ("{path: $.application.name, equals: customer portal, ignore_case: true}", {}, True),
    ("{path: $.application.name, not_equals: Console}", {}, True),
    ("{path: $.application.name, not_equals: Console}", {"application": None}, False),
    ("{path: $.application.name, in: [Console, Customer Portal]}", {}, True),
    ("{path: $.application.name, not_in: [Console]}", {}, True),
    ("{path: $.application.name, contains: Portal}", {}, True),
    ("{path: $.application.name, not_contains: Portal}", {}, False),
    ("{path: $.application.name, starts_with: CUSTOMER, ignore_case: true}", {}, True),
    ("{path: $.application.name, ends_with: Portal}", {}, True),
    ("{path: $.application.name, matches: 'Cust.*al$'}", {}, True),
    ("{path: $.application.name, matches: '^Portal'}", {}, False),
    ("{path: $.reason.context.failedStep.step, gt: 0}", {}, True),
    ("{path: $.reason.context.failedStep.step, gte: 1}", {}, True),
    ("{path: $.reason.context.failedStep.step, lt: 1}", {}, False),
    ("{path: $.reason.context.failedStep.step, lte: 1}", {}, True),
    ("{path: $.reason.context.failedStep.step, equals: 1}", {}, True),
    # numbers and strings never silently equal; ordering accepts numeric strings (documented)
    ("{path: $.reason.context.failedStep.step, equals: '1'}", {}, False),
    ("{path: $.count, equals: 3}", {"count": "3"}, False),
    ("{path: $.count, gt: 2}", {"count": "3"}, True),
    ("{path: $.count, gt: 2}", {"count": "three"}, False),
    ("{path: $.flag, equals: true}", {"flag": 1}, False),
    ("{path: $.flag, in: [1]}", {"flag": True}, False),
    # missing fields never raise and never hold, except exists: false
    ("{path: $.user.id, exists: true}", {}, False),
    ("{path: $.user.id, exists: false}", {}, True),
    ("{path: $.nothing.here, equals: x}", {}, False),
    ("{path: $.nothing.here, not_in: [x]}", {}, False),
    ("{path: $.application.name, gt: 3}", {}, False),
    # multi-valued: any value holds; lists are membership for contains
    ("{path: '$.user.claims[*].uri', ends_with: /username}", {}, True),
    ("{path: $.tags, equals: b}", {"tags": ["a", "b"]}, True),
    ("{path: $.tags, contains: b}", {"tags": ["a", "bc"]}, False),
    ("{path: $.tags, not_contains: z}", {"tags": ["a", "b"]}, True),
    # claims by short name and by URI, envelope paths
    ("{claim: username, ends_with: '@example.com'}", {}, True),
    ("{claim: 'http://wso2.org/claims/username', equals: jane.doe@example.com}", {}, True),
    ("{claim: emailaddress, exists: false}", {}, True),
    ("{envelope: $.iss, equals: 'https://api.asgardeo.io/t/acme'}", {}, True),
    ("{envelope: $.rci, exists: true}", {}, True),
    # combinators at any depth
    ("all: [{initiatorType: USER}, {action: LOGIN}]", {}, True),
    ("any: [{initiatorType: ADMIN}, {action: LOGIN}]", {}, True),
    ("any: [{initiatorType: ADMIN}, {action: LOGOUT}]", {}, False),
    ("not: {initiatorType: ADMIN}", {}, True),
    ("not: {any: [{initiatorType: ADMIN}, {not: {path: $.user.id, exists: true}}]}", {}, False),
]


@pytest.mark.parametrize("when, overrides, expected", CASES, ids=[c[0] for c in CASES])
def test_condition(tmp_path, when, overrides, expected):
    ruleset = load(tmp_path, rule_with(when))
    assert decide(ruleset, envelope(**overrides))["r"].matched is expected


def test_multi_valued_claim_matches_any_value(tmp_path):
    ruleset = load(tmp_path, rule_with("{claim: emailAddresses, equals: jane@work.example.com}",
                                       event="user.userProfileUpdated"))
    assert decide(ruleset, envelope("user.userProfileUpdated"))["r"].matched


def test_a_miss_names_the_first_failed_condition_and_the_value_found(tmp_path):
    ruleset = load(tmp_path, rule_with("""
        initiatorType: USER
        all:
          - {path: $.reason.context.failedStep.step, gte: 1}
          - {path: $.application.name, in: [Console, My Account]}
        """))
    decision = decide(ruleset, envelope())["r"]
    assert (decision.matched, decision.failed, decision.actual) == (
        False, 'when.all[1]: $.application.name in ["Console", "My Account"]', "Customer Portal")
    assert decision.to_json() == {"rule": "r", "matched": False, "failed": decision.failed,
                                  "actual": "Customer Portal"}


def test_a_missing_field_is_reported_with_actual_none(tmp_path):
    ruleset = load(tmp_path, rule_with("{path: $.user.id, equals: x}"))
    decision = decide(ruleset, envelope())["r"]
    assert (decision.failed, decision.actual) == ('when: $.user.id equals "x"', None)


def test_any_and_not_misses_say_which_combinator_failed(tmp_path):
    ruleset = load(tmp_path, rule_with("any: [{initiatorType: ADMIN}, {action: LOGOUT}]"))
    assert decide(ruleset, envelope())["r"].failed == (
        'when.any: none of 2 conditions held (first: when.any[0].initiatorType: $.initiatorType equals "ADMIN")')
    ruleset = load(tmp_path, rule_with("not: {initiatorType: USER}"))
    decision = decide(ruleset, envelope())["r"]
    assert (decision.failed, decision.actual) == (
        'when.not: expected this not to hold: when.not.initiatorType: $.initiatorType equals "USER"', "USER")
    ruleset = load(tmp_path, rule_with("not: {all: [{initiatorType: USER}, {action: LOGIN}]}"))
    assert decide(ruleset, envelope())["r"].failed == "when.not: the negated condition held"


SELECTOR_RULES = """
rules:
  - {id: by-alias, event: login.loginFailed, actions: [{log: {message: a}}]}
  - {id: by-uri, event: "https://schemas.identity.wso2.org/events/login/event-type/loginFailed",
     actions: [{log: {message: a}}]}
  - {id: by-channel, event: "login.*", actions: [{log: {message: a}}]}
  - {id: by-star, event: "*", actions: [{log: {message: a}}]}
  - {id: by-list, event: [user.userDisabled, login.loginSuccess], actions: [{log: {message: a}}]}
  - {id: other, event: user.userCreated, actions: [{log: {message: a}}]}
  - {id: disabled, enabled: false, event: "*", actions: [{log: {message: a}}]}
"""


@pytest.mark.parametrize("alias, expected", [
    ("login.loginFailed", ["by-alias", "by-uri", "by-channel", "by-star"]),
    ("login.loginSuccess", ["by-channel", "by-star", "by-list"]),
    ("user.userDisabled", ["by-star", "by-list"]),
    ("user.userCreated", ["by-star", "other"]),
])
def test_only_candidate_rules_are_evaluated_in_file_order(tmp_path, alias, expected):
    ruleset = load(tmp_path, SELECTOR_RULES)
    env = envelope(alias)
    assert [d.rule_id for d in ruleset.evaluate(env, env.uris[0], "asgardeo")] == expected


def test_unknown_event_uris_and_properties_never_break_matching(tmp_path):
    ruleset = load(tmp_path, SELECTOR_RULES)
    event = sample_event("login.loginFailed", brandNewField={"x": 1})
    uri = "https://schemas.identity.wso2.org/events/login/event-type/loginLocked"
    event["events"] = {uri: next(iter(event["events"].values())), "urn:example:custom": {"a": 1}}
    env = envelope_from_claims(event)
    assert [d.rule_id for d in ruleset.evaluate(env, uri, "asgardeo")] == ["by-channel", "by-star"]
    assert [d.rule_id for d in ruleset.evaluate(env, "urn:example:custom", "asgardeo")] == ["by-star"]


def test_webhooks_limit_a_rule_to_events_from_those_webhooks(tmp_path):
    ruleset = load(tmp_path, """
        rules:
          - {id: only-b, event: "*", webhooks: [b], actions: [{log: {message: x}}]}
        """, webhooks=["a", "b"])
    env = envelope()
    assert decide(ruleset, env, "b")["only-b"].matched
    miss = decide(ruleset, env, "a")["only-b"]
    assert (miss.matched, miss.failed, miss.actual) == (False, "webhooks: only for b", "a")


def test_several_event_bodies_are_evaluated_per_uri(tmp_path):
    ruleset = load(tmp_path, SELECTOR_RULES)
    event = sample_event("login.loginFailed")
    event["events"][alias_to_uri("user.userCreated")] = {"initiatorType": "ADMIN"}
    env = envelope_from_claims(event)
    assert [len(ruleset.evaluate(env, uri, "asgardeo")) for uri in env.uris] == [4, 2]
