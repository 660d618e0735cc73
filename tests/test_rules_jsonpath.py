"""Every JSONPath form docs/rules.md promises, evaluated through the live evaluator (StatefulRules, as the
processor runs it), and compiled once at load: evaluation never parses a path."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.match import paths
from engine.match.stateful.evaluator import StatefulRules
from engine.store.sqlite import SQLiteStore
from tests.rules_support import envelope, load, problems, rule_with

USERNAME = "http://wso2.org/claims/username"
FORMS = {
    "descent": ("{path: $..value, contains: jane.doe@example.com}", "{path: $..value, contains: nobody}"),
    "descent-key": ("{path: $..orgHandle, equals: acme}", "{path: $..orgHandle, equals: other}"),
    "filter": (f"{{path: \"$.user.claims[?(@.uri == '{USERNAME}')].value\", equals: jane.doe@example.com}}",
               f"{{path: \"$.user.claims[?(@.uri == '{USERNAME}')].value\", equals: john@example.com}}"),
    "filter-regex": ("{path: \"$.user.claims[?(@.uri =~ '.*/emailaddress')].value\", ends_with: '@example.com'}",
                     "{path: \"$.user.claims[?(@.uri =~ '.*/emailaddress')].value\", ends_with: '@example.org'}"),
    "slice": ("{path: '$.user.claims[0:1].value', equals: jane.doe@example.com}",
              "{path: '$.user.claims[1:].uri', equals: " + USERNAME + "}"),
    "negative-index": ("{path: '$.user.claims[-1].uri', ends_with: emailaddress}",
                       "{path: '$.user.claims[-1].uri', ends_with: username}"),
    "wildcard-list": ("{path: '$.user.claims[*].uri', contains: " + USERNAME + "}",
                      "{path: '$.user.claims[*].uri', contains: urn:none}"),
    "wildcard-object": ("{path: '$.application.*', contains: Customer Portal}",
                        "{path: '$.application.*', contains: Console}"),
}


def _live(tmp_path: Path, when: str) -> tuple[StatefulRules, SQLiteStore]:
    ruleset = load(tmp_path, rule_with(when, event="login.loginSuccess"))
    store = SQLiteStore(tmp_path / "state.db")
    return StatefulRules(ruleset, store), store


@pytest.mark.parametrize("form", list(FORMS))
def test_each_jsonpath_form_holds_and_fails_through_the_live_evaluator(form: str, tmp_path: Path) -> None:
    holds, fails = FORMS[form]
    env = envelope("login.loginSuccess")
    for when, expected in ((holds, True), (fails, False)):
        rules, store = _live(tmp_path / str(expected), when)
        decision = rules.evaluate(env, env.uris[0], "asgardeo", now=env.iat_ms / 1000)[0]
        store.close()
        assert decision.matched is expected, (form, when, decision.failed, decision.actual)


def test_paths_are_parsed_at_load_and_never_while_evaluating(tmp_path: Path, monkeypatch) -> None:
    rules, store = _live(tmp_path, FORMS["filter"][0])

    def refuse(expression: str) -> None:
        raise AssertionError(f"parsed {expression!r} while evaluating")

    monkeypatch.setattr(paths, "jsonpath_parse", refuse)
    env = envelope("login.loginSuccess")
    for _ in range(3):
        assert rules.evaluate(env, env.uris[0], "asgardeo", now=env.iat_ms / 1000)[0].matched
    store.close()


def test_a_filter_on_a_missing_list_is_a_miss_not_an_error(tmp_path: Path) -> None:
    rules, store = _live(tmp_path, FORMS["filter"][0])
    env = envelope("login.loginSuccess", user={"claims": "not a list"})
    decision = rules.evaluate(env, env.uris[0], "asgardeo", now=env.iat_ms / 1000)[0]
    store.close()
    assert not decision.matched and decision.actual is None


def test_an_invalid_jsonpath_is_a_load_error(tmp_path: Path) -> None:
    found = problems(tmp_path, rule_with("{path: '$.user.claims[?(@.uri ==]', equals: x}"))
    assert len(found) == 1 and found[0].startswith("rules.yaml:5: rule 'r': when.path: invalid JSONPath ")
