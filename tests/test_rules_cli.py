"""`idhooks validate`, `idhooks test`, `idhooks replay` and `idhooks events` through engine.cli.main, on
real files and a real store (the stored-event commands on SQLite and on Redis)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest

from engine.cli import main
from engine.config.settings import load_config
from engine.verify.envelope import parse_envelope
from engine.match.loader import load_for_config
from engine.store import open_store
from engine.store.base import IncomingEvent
from tests.conftest import basic_config, sample_event
from tests.store_backends import backend_config, backend_params, drop_deployment, store_url
from tests.redisutil import unique_group
from tests.rules_support import write_rules

RULES = """
rules:
  - id: portal-failures
    event: login.loginFailed
    when:
      all:
        - {path: $.application.name, equals: Customer Portal}
    actions:
      - log: {message: "failed login for {{ username }}"}
  - id: console-failures
    event: login.*
    when:
      all:
        - {path: $.application.name, equals: Console}
    actions:
      - log: {message: "console: {{ username }}"}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    config = basic_config(tmp_path)
    write_rules(tmp_path / "rules", RULES)
    return config


@pytest.fixture(params=backend_params())
def stored_project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """`project` on each store backend: the commands that read stored events work the same on all."""
    if request.param == "sqlite":
        yield request.getfixturevalue("project")
        return
    url, group = store_url(request, request.param), unique_group()
    config = backend_config(request.param, tmp_path, url, group)
    write_rules(tmp_path / "rules", RULES)
    yield config
    drop_deployment(request.param, url, group, tmp_path / "cleanup")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_ok(project, capsys):
    assert run(capsys, "validate", "--config", str(project)) == (
        0, f"OK: {project}, 2 rules in 1 files, 0 rule tests\n", "")


def test_validate_reports_every_error_of_every_given_file(project, capsys):
    write_rules(project.parent / "more", "rules:\n  - {id: x, event: login.loginFaild, actions: [{log: {}}]}\n")
    write_rules(project.parent / "more", "rules: [{id: y, event: '*', when: {path: $.a, equal: 1}, "
                                         "actions: [{log: {message: m}}]}]\n", "b.yaml")
    code, out, err = run(capsys, "validate", "--config", str(project), str(project.parent / "more"))
    more = project.parent / "more"
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "idhooks: configuration error:",
        f"{more}/b.yaml:1: rule 'y': when: unknown operator 'equal' (did you mean 'equals'?); expected one of: "
        "equals, not_equals, in, not_in, contains, not_contains, starts_with, ends_with, matches, exists, gt, gte, "
        "lt, lte",
        f"{more}/rules.yaml:2: rule 'x': event: unknown event 'login.loginFaild' (did you mean "
        "'login.loginFailed'?); `idhooks catalog` lists the aliases",
        f"{more}/rules.yaml:2: rule 'x': actions[0].log.message: missing required field (the line to log)",
    ]


def test_validate_reports_config_errors(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("server: {port: x}\nrulez: {}\n")
    code, out, err = run(capsys, "validate", "--config", str(config))
    assert code == 1 and err.splitlines()[1:] == [
        f"{config}:2: rulez: unknown key (did you mean 'rules'?); expected one of: server, store, webhooks, rules, "
        "quarantine, delivery, destinations, metrics, enrich, subscriptions, api",
        f"{config}:1: server.port: expected a whole number >= 0, got 'x'"]


def test_test_prints_matches_with_rendered_actions_and_misses_with_the_actual_value(project, capsys):
    event = sample_event("login.loginFailed")
    event_file = project.parent / "event.json"
    event_file.write_text(json.dumps(event))
    code, out, err = run(capsys, "test", str(event_file), "--config", str(project))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{event_file}: login.loginFailed (jti {event['jti']})",
        "  MATCH portal-failures",
        "    action 0 log",
        '      message: "failed login for jane.doe@example.com"',
        '  miss  console-failures: when.all[0]: $.application.name equals "Console" (actual: "Customer Portal")',
    ]
    code, out, _ = run(capsys, "test", str(event_file), "--config", str(project), "--json")
    assert json.loads(out) == [{
        "file": str(event_file), "jti": event["jti"], "uri": next(iter(event["events"])), "type": "login.loginFailed",
        "decisions": [
            {"rule": "portal-failures", "matched": True, "actions": [
                {"index": 0, "type": "log", "destination": None,
                 "fields": {"message": "failed login for jane.doe@example.com"}}]},
            {"rule": "console-failures", "matched": False,
             "failed": 'when.all[0]: $.application.name equals "Console"', "actual": "Customer Portal"}]}]


def test_test_refuses_a_file_that_is_not_an_event(project, capsys):
    bad = project.parent / "bad.json"
    bad.write_text('{"jti": "x"}')
    code, out, err = run(capsys, "test", str(bad), "--config", str(project))
    assert (code, out) == (1, "")
    assert err.splitlines()[1] == (f"{bad}: not a Security Event Token: missing or non-numeric 'iat': expected "
                                   "epoch milliseconds as a number")


RULE_TESTS = """
tests:
  - name: portal failure
    event: login.loginFailed
    match: [portal-failures]
    rendered:
      portal-failures:
        - {message: failed login for jane.doe@example.com}
  - name: console failure
    event: login.loginSuccess
    set: {application.name: Console}
    match: [console-failures, portal-failures]
"""


def test_rule_tests_report_failures_and_condition_coverage(project, capsys):
    write_rules(project.parent / "rules" / "tests", RULE_TESTS, "logins.yaml")
    code, out, err = run(capsys, "test", "--config", str(project))
    source = f"{project.parent}/rules/tests/logins.yaml"
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"ok   {source}:2: portal failure",
        f"FAIL {source}:8: console failure",
        "       expected 'portal-failures' to match, but it did not: it is not a candidate for this event",
        "1 passed, 1 failed",
        "condition coverage: 1 of 2 conditions both held and failed",
        f"  not covered: {project.parent}/rules/rules.yaml:6: rule 'portal-failures': when.all[0]: "
        '$.application.name equals "Customer Portal": never failed',
    ]
    code, out, _ = run(capsys, "test", "--config", str(project), "--json")
    report = json.loads(out)
    assert (code, report["passed"], report["failed"], report["coverage"]["covered"]) == (1, 1, 1, 1)


def test_rule_tests_pass_with_exit_0(project, capsys):
    write_rules(project.parent / "rules" / "tests", RULE_TESTS.replace(", portal-failures]", "]"), "logins.yaml")
    code, out, _ = run(capsys, "test", "--config", str(project))
    assert code == 0 and "2 passed, 0 failed" in out.splitlines()


def test_rule_test_file_errors_are_load_errors(project, capsys):
    write_rules(project.parent / "rules" / "tests", "tests:\n  - name: t\n    event: login.loginFaild\n"
                                                    "    match: x\n    expect: []\n", "bad.yaml")
    code, _, err = run(capsys, "test", "--config", str(project))
    prefix = f"{project.parent}/rules/tests/bad.yaml:2: test 't'"
    assert code == 1 and err.splitlines()[1:] == [
        f"{prefix}: expect: unknown key",
        f"{prefix}: match: expected a list of rule ids (empty: no rule may match)",
        f"{prefix}: event: unknown event alias 'login.loginFaild' (did you mean 'login.loginFailed'?)",
    ]


def store_events(config_path: Path, decide_with_rules: bool) -> list[dict]:
    """Ingest three events into the config's real SQLite store and complete them with the decisions
    of the current rules (as the live processor does)."""
    config = load_config(config_path)
    ruleset = load_for_config(config)
    store = open_store(config.store)
    events = [sample_event("login.loginFailed"), sample_event("login.loginSuccess"),
              sample_event("login.loginFailed", application={"name": "Console"})]
    try:
        for i, event in enumerate(events):
            body = json.dumps(event).encode()
            store.ingest(IncomingEvent(event["jti"], "asgardeo", event["iat"], time.time() - 60 + i,
                                       tuple(event["events"]), body), 86400)
            env = parse_envelope(body)
            decisions = [{**d.to_json(), "uri": uri} for uri in env.uris
                         for d in ruleset.evaluate(env, uri, "asgardeo")] if decide_with_rules else []
            store.complete_event(event["jti"], decisions, [], time.time())
    finally:
        store.close()
    return events


def test_events_list_and_show_print_the_decision_records(stored_project, capsys):
    project = stored_project
    events = store_events(project, decide_with_rules=True)
    code, out, _ = run(capsys, "events", "list", "--since", "1h", "--config", str(project))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4 and lines[0].split() == ["RECEIVED", "JTI", "WEBHOOK", "TYPE", "STATUS",
                                                                  "MATCHED"]
    assert [line.split()[1:] for line in lines[1:]] == [
        [events[2]["jti"], "asgardeo", "login.loginFailed", "processed", "console-failures"],
        [events[1]["jti"], "asgardeo", "login.loginSuccess", "processed", "-"],
        [events[0]["jti"], "asgardeo", "login.loginFailed", "processed", "portal-failures"]]
    code, out, _ = run(capsys, "events", "show", events[0]["jti"], "--config", str(project))
    assert code == 0 and out.splitlines()[5:] == [
        "status:    processed",
        "decisions:",
        "  MATCH portal-failures",
        "    action 0 log",
        '      message: "failed login for jane.doe@example.com"',
        '  miss  console-failures: when.all[0]: $.application.name equals "Console" (actual: "Customer Portal")']
    code, out, _ = run(capsys, "events", "show", events[0]["jti"], "--config", str(project), "--json")
    assert json.loads(out)["decisions"][0]["rule"] == "portal-failures"


def test_events_show_unknown_jti_exits_1(stored_project, capsys):
    project = stored_project
    assert run(capsys, "events", "show", "nope", "--config", str(project)) == (
        1, "", "idhooks: no stored event with jti 'nope' (see `idhooks events list`)\n")


def test_replay_backtests_edited_rules_without_side_effects(stored_project, capsys):
    project = stored_project
    events = store_events(project, decide_with_rules=True)
    edited = project.parent / "edited"
    write_rules(edited, RULES.replace("equals: Console", "in: [Console, Customer Portal]"))
    code, out, _ = run(capsys, "replay", "--since", "1h", "--rules", str(edited), "--config", str(project))
    assert code == 0
    console = ["    action 0 log", '      message: "console: jane.doe@example.com"']
    assert [line for line in out.splitlines() if not line.startswith("20")] == [
        "  MATCH portal-failures",
        "    action 0 log",
        '      message: "failed login for jane.doe@example.com"',
        "  MATCH console-failures  (new)", *console,
        "  MATCH console-failures  (new)", *console,
        "  MATCH console-failures", *console,
        "replayed 3 events: 3 would fire 4 actions; 2 differ from their decision record"]
    assert [line.split()[1:] for line in out.splitlines() if line.startswith("20")] == [
        [e["jti"], alias] for e, alias in zip(events, ["login.loginFailed", "login.loginSuccess", "login.loginFailed"])]
    config = load_config(project)
    store = open_store(config.store)
    try:
        assert store.list_jobs() == []
        assert store.get_event(events[0]["jti"]).decisions[0]["rule"] == "portal-failures"
        assert len(store.get_event(events[0]["jti"]).decisions) == 2
    finally:
        store.close()


def test_rule_tests_take_an_event_file_or_an_inline_event(project, capsys):
    event = sample_event("login.loginFailed", application={"name": "Console"})
    tests_dir = project.parent / "rules" / "tests"
    tests_dir.mkdir(parents=True)
    (tests_dir / "console.json").write_text(json.dumps(event))
    inline = json.dumps(sample_event("login.loginSuccess"))
    write_rules(tests_dir, f"""
        tests:
          - name: from a file
            file: console.json
            match: [console-failures]
          - name: inline
            event: {inline}
            set: {{application.name: Console, application.extra.deep: 1}}
            match: [console-failures]
        """, "files.yaml")
    code, out, _ = run(capsys, "test", "--config", str(project))
    assert code == 0 and "2 passed, 0 failed" in out.splitlines()
