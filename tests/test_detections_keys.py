"""The rule keys sequence, new_value and absence: every bad value is a clear load error
(file:line: rule 'id': field: ...), and hostile event values reaching their state stay bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.match.stateful.evaluator import StatefulRules
from engine.store.sqlite import SQLiteStore
from tests.rules_support import envelope, load, problems

ACTIONS = "    actions: [{log: {message: x}}]\n"


def rule(body: str, event: str | None = "login.loginSuccess") -> str:
    """A one-rule file whose key starts on line 3; a sequence rule gets no `event:` (its steps give them)."""
    event = None if "sequence:" in body else event
    return "rules:\n  - id: r\n" + body + (f"    event: {event}\n" if event else "") + ACTIONS


BAD = [
    # (rule body, expected problems without the "rules.yaml:" prefix)
    ("    sequence: 5\n", ["3: rule 'r': sequence: expected a mapping with keys group_by, within, steps, reset_on, "
                           "max_groups, got 5"]),
    ("    sequence: {within: 5m, steps: [{event: login.loginFailed}]}\n",
     ["3: rule 'r': sequence.steps: expected a list of 2 to 20 steps like {event: login.loginFailed, count: 3}, "
      "got [{'event': 'login.loginFailed'}]"]),
    ("    sequence: {within: soon, stepz: []}\n",
     ["3: rule 'r': sequence.stepz: unknown key (did you mean 'steps'?); expected one of: group_by, within, steps, "
      "reset_on, max_groups",
      "3: rule 'r': sequence.within: expected a duration like 30s, 10m, 1h or 7d, got 'soon'",
      "3: rule 'r': sequence.steps: expected a list of 2 to 20 steps like {event: login.loginFailed, count: 3}, "
      "got None"]),
    ("    sequence:\n      within: 5m\n      steps:\n        - {event: login.loginFaild, count: 0}\n"
     "        - {evnt: login.loginSuccess, when: {initiatorTyp: USER}}\n",
     ["6: rule 'r': sequence.steps[0].event: unknown event 'login.loginFaild' (did you mean 'login.loginFailed'?); "
      "`idhooks catalog` lists the aliases",
      "6: rule 'r': sequence.steps[0].count: expected a whole number from 1 to 10000, got 0",
      "7: rule 'r': sequence.steps[1].evnt: unknown key (did you mean 'event'?); expected one of: event, when, count",
      "7: rule 'r': sequence.steps[1]: missing 'event' (an alias like login.loginFailed, a URI or a list of these)"]),
    ("    sequence:\n      within: 5m\n      group_by: [geo.contry]\n      steps: [{event: login.loginFailed}, "
     "{event: login.loginSuccess, when: {initiatorTyp: USER}}]\n      reset_on: {event: nope.x}\n",
     ["3: rule 'r': sequence.group_by[0]: unknown enrichment 'geo.contry' (did you mean 'geo.country'?); expected "
      "one of: geo.country, geo.country_name, geo.asn, geo.as_org",
      "6: rule 'r': sequence.steps[1].when: unknown condition key 'initiatorTyp' (did you mean 'initiatorType'?); "
      "expected one of: all, any, not, initiatorType, action, credentialType, initiatorIpAddress, path, claim, "
      "envelope",
      "7: rule 'r': sequence.reset_on.event: unknown event 'nope.x'; `idhooks catalog` lists the aliases"]),
    ("    new_value: {group_by: [claims.username], lookback: 0s, learn_for: -1d, max_values: 0}\n",
     ["3: rule 'r': new_value: missing 'of' (the path whose new values fire the rule, like geo.country)",
      "3: rule 'r': new_value.lookback: must be at least 1s, got '0s'",
      "3: rule 'r': new_value.learn_for: expected a duration like 30s, 10m, 1h or 7d, got '-1d'",
      "3: rule 'r': new_value.max_values: expected a whole number from 1 to 100000, got 0"]),
    ("    new_value: {of: [a, b], lookback: 1d}\n",
     ["3: rule 'r': new_value.of: expected one path like geo.country, got ['a', 'b']"]),
    ("    absence: {within: 1d}\n",
     ["3: rule 'r': absence: missing 'expect' (the event that must follow, like {event: login.loginSuccess})",
      "3: rule 'r': absence: missing 'group_by' (the key both events share, like [user_id])"]),
    ("    absence: {expect: login.loginSuccess, group_by: user_id, within: 1y, max_timers: 1.5}\n",
     ["3: rule 'r': absence.expect: expected a mapping with keys event, when, got 'login.loginSuccess'",
      "3: rule 'r': absence.within: expected a duration like 30s, 10m, 1h or 7d, got '1y'",
      "3: rule 'r': absence.max_timers: expected a whole number from 1 to 100000000, got 1.5"]),
    ("    threshold: {count: 2, within: 1m}\n    new_value: {of: geo.country, lookback: 1d}\n"
     "    absence: {expect: {event: login.loginSuccess}, group_by: [user_id], within: 1d}\n",
     ["5: rule 'r': absence: cannot be combined with 'new_value' in one rule; write two rules",
      "3: rule 'r': threshold: cannot be combined with 'new_value' in one rule; write two rules"]),
]


@pytest.mark.parametrize("body, expected", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_values_are_clear_load_errors(body: str, expected: list[str], tmp_path: Path) -> None:
    found = problems(tmp_path, rule(body))
    assert sorted(found) == sorted(f"rules.yaml:{line}" for line in expected)


def test_a_sequence_rule_takes_its_events_from_its_steps(tmp_path: Path) -> None:
    body = "    sequence: {within: 5m, steps: [{event: login.loginFailed}, {event: login.loginSuccess}]}\n"
    assert problems(tmp_path / "a", "rules:\n  - id: r\n    event: login.loginSuccess\n" + body + ACTIONS) == [
        "rules.yaml:3: rule 'r': event: a sequence rule takes its events from sequence.steps; remove `event`"]
    loaded = load(tmp_path / "b", rule(body, event=None))
    assert loaded.rules[0].events == ("login.loginFailed", "login.loginSuccess")


def test_templates_see_each_keys_names_and_only_those(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        rules:
          - id: r
            event: login.loginSuccess
            new_value: {of: geo.country, lookback: 1d}
            actions: [{log: {message: "{{ steps }}"}}]
    """)
    assert found[0].startswith("rules.yaml:5: rule 'r': actions[0].log.message: unknown template name 'steps'")


HUGE = "x" * 1_000_000


def _evaluate(rules: StatefulRules, env) -> list:
    return rules.evaluate(env, env.uris[0], "asgardeo", now=env.iat_ms / 1000)


def test_huge_and_many_event_values_stay_bounded_in_state(tmp_path: Path) -> None:
    ruleset = load(tmp_path, """
        rules:
          - id: new-app
            event: login.loginSuccess
            new_value: {of: $.application.name, group_by: [$.user.id], lookback: 30d, max_values: 50}
            actions: [{log: {message: "{{ value | truncate(20) }}"}}]
          - id: seq
            sequence:
              group_by: [$.application.name]
              within: 1h
              steps: [{event: login.loginFailed}, {event: login.loginSuccess}]
            actions: [{log: {message: "{{ group[0] | length }}"}}]
    """)
    store = SQLiteStore(tmp_path / "state.db")
    rules = StatefulRules(ruleset, store, on_bounded=lambda rule, bound: bounded.append((rule, bound)))
    bounded: list[tuple[str, str]] = []
    for i in range(200):
        _evaluate(rules, envelope("login.loginSuccess", application={"name": f"app-{i}-{HUGE if i < 3 else ''}"},
                                  user={"id": HUGE}))
    _evaluate(rules, envelope("login.loginFailed", application={"name": HUGE}))
    fired = [d for d in _evaluate(rules, envelope("login.loginSuccess", application={"name": HUGE})) if d.matched]
    assert [d.rule_id for d in fired] == ["new-app", "seq"] and fired[1].actions[0].fields["message"] == "1000000"
    widest = store._read("SELECT MAX(LENGTH(value)) FROM state_nv_values")[0][0]
    keys = store._read("SELECT MAX(LENGTH(group_key)) FROM state_nv_groups")[0][0]
    assert widest <= 200 and keys <= 200
    assert store._read("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM state_nv_values GROUP BY gid)")[0][0] == 50
    assert ("new-app", "max_values") in bounded
    store.close()


def test_a_missing_value_is_never_new_and_the_record_says_why(tmp_path: Path) -> None:
    ruleset = load(tmp_path, """
        rules:
          - id: new-country
            event: login.loginSuccess
            new_value: {of: geo.country, group_by: [claims.username], lookback: 30d}
            actions: [{log: {message: "{{ value }}"}}]
    """)
    store = SQLiteStore(tmp_path / "state.db")
    rules = StatefulRules(ruleset, store)
    [decision] = _evaluate(rules, envelope("login.loginSuccess"))  # a documentation address: no country
    assert decision.failed == "new_value: not counted: new_value.of geo.country is missing in this event " \
                              "(a missing value is never new)"
    [decision] = _evaluate(rules, envelope("login.loginSuccess", initiatorIpAddress="8.8.8.8"))
    assert decision.matched and decision.actions[0].fields["message"] == "US"
    [decision] = _evaluate(rules, envelope("login.loginSuccess", initiatorIpAddress="8.8.4.4"))
    assert decision.failed == 'new_value: geo.country "US" was seen for this group within 30d'
    store.close()


def test_bad_advance_and_geo_entries_in_rule_tests_are_clear_load_errors(tmp_path: Path) -> None:
    from engine.errors import ConfigError
    from engine.offline.ruletests import load_rule_tests

    path = tmp_path / "t.yaml"
    path.write_text("""tests:
  - name: a
    sequence: [{event: login.loginFailed, at: 0s}, {advance: soon}]
    match: []
  - name: b
    sequence: [{advance: 1h, at: 2s}]
    match: []
  - name: c
    geo: {8.8.8.8: {asn: many, contry: NL}}
    event: login.loginSuccess
    match: []
  - name: d
    geo: [8.8.8.8]
    event: login.loginSuccess
    match: []
""")
    with pytest.raises(ConfigError) as caught:
        load_rule_tests([path])
    found = [p.replace(f"{path}", "t.yaml").replace(str(tmp_path) + "/", "") for p in caught.value.problems]
    assert found == [
        "t.yaml:2: test 'a': sequence[1].advance: expected a duration like 30s, 10m, 1h or 7d, got 'soon'",
        "t.yaml:5: test 'b': sequence[0]: an advance step takes nothing else, like {advance: 25h}",
        "t.yaml:8: test 'c': geo.8.8.8.8.asn: expected a number, got 'many'",
        "t.yaml:12: test 'd': geo: expected addresses with their enrichment, like {203.0.113.7: {country: NL, "
        "asn: 64500}}"]


def test_condition_coverage_counts_the_when_of_sequence_steps(tmp_path: Path) -> None:
    from engine.offline.ruletests import load_rule_tests, run_rule_tests
    from engine.store import scratch_store

    ruleset = load(tmp_path / "rules", """
        rules:
          - id: takeover
            sequence:
              within: 15m
              steps: [{event: login.loginFailed}, {event: login.loginSuccess, when: {initiatorType: USER}}]
            actions: [{log: {message: x}}]
    """)
    tests = tmp_path / "t.yaml"
    tests.write_text("tests:\n  - name: fires\n    sequence: [{event: login.loginFailed, at: 0s}, "
                     "{event: login.loginSuccess, at: 1m}]\n    match: [takeover]\n")
    report = run_rule_tests(ruleset, load_rule_tests([tests]), "asgardeo", scratch_store)
    assert not report.failed and (report.covered, report.conditions) == (0, 1)
    assert report.uncovered[0].endswith("rule 'takeover': sequence.steps[1].when.initiatorType: "
                                        "$.initiatorType equals \"USER\": never failed")
