"""Issue 12 item 7: `matches` runs in linear time (RE2), so an attacker-chosen value cannot stall the
processor; a pattern RE2 cannot run is a load error naming the construct."""

from __future__ import annotations

import pytest

from tests.rules_support import decide, envelope, load, problems, rule_with

CATASTROPHIC = "{claim: username, matches: '^(a+)+$'}"


@pytest.mark.parametrize("username, matched", [("a" * 10_000, True), ("a" * 10_000 + "!", False),
                                               ("a" * 40 + "b", False)])
def test_catastrophic_pattern_is_evaluated_on_long_input(tmp_path, username, matched):
    """With Python's backtracking engine the non-matching inputs take longer than the universe's age; RE2
    answers at once (the suite's timeout is what would catch a regression, not a timing assert)."""
    ruleset = load(tmp_path, rule_with(CATASTROPHIC))
    env = envelope(user={"id": "u1", "claims": [{"uri": "http://wso2.org/claims/username", "value": username}]})
    assert decide(ruleset, env)["r"].matched is matched


def test_lone_surrogate_value_is_evaluated(tmp_path):
    ruleset = load(tmp_path, rule_with("{claim: username, matches: '^jane.*$'}"))
    env = envelope(user={"id": "u1", "claims": [{"uri": "http://wso2.org/claims/username", "value": "jane\ud800"}]})
    assert decide(ruleset, env)["r"].matched is True


def test_ignore_case_still_applies(tmp_path):
    ruleset = load(tmp_path, rule_with("{path: $.application.name, matches: '^customer', ignore_case: true}"))
    assert decide(ruleset, envelope())["r"].matched is True


@pytest.mark.parametrize("pattern, construct", [
    (r"(a)\\1", "a backreference"),
    ("(?P<x>a)(?P=x)", "a backreference"),
    ("foo(?=bar)", "a lookahead ((?=...) or (?!...))"),
    ("foo(?!bar)", "a lookahead ((?=...) or (?!...))"),
    ("(?<=foo)bar", "a lookbehind ((?<=...) or (?<!...))"),
    ("(?<!foo)bar", "a lookbehind ((?<=...) or (?<!...))"),
])
def test_unsupported_construct_is_a_load_error_naming_it(tmp_path, pattern, construct):
    found = problems(tmp_path, rule_with(f'{{path: $.a, matches: "{pattern}"}}'))
    shown = pattern.replace("\\\\", "\\")
    assert len(found) == 1
    assert found[0].startswith(f"rules.yaml:5: rule 'r': when.matches: {shown!r} uses {construct}, which the "
                               "linear-time regex engine (RE2) cannot run; rewrite the pattern without it (")
