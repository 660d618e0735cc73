"""`mode: shadow`: a rule of any kind is evaluated and rendered, recorded as "would send", and sends nothing;
`idhooks events show` shows it and idhooks_actions_shadowed_total counts it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.runtime import Current
from engine.cli import main
from engine.config.settings import load_config
from engine.match.loader import load_for_config
from engine.match.processor import Processor
from engine.match.stateful.evaluator import StatefulRules
from engine.metrics import Metrics
from engine.store import open_store
from engine.store.base import IncomingEvent
from tests.conftest import basic_config, sample_event
from tests.rules_support import problems, write_rules

RULES = """
rules:
  - id: quiet-run
    event: login.loginSuccess
    mode: shadow
    actions: [{log: {message: "{{ username }} signed in from {{ ip }}"}}, {log: {message: second}}]
  - id: quiet-threshold
    event: login.loginSuccess
    mode: shadow
    threshold: {count: 2, within: 10m, group_by: [claims.username]}
    actions: [{log: {message: "{{ count }} sign-ins"}}]
  - id: live
    event: login.loginSuccess
    mode: live
    actions: [{log: {message: "live {{ username }}"}}]
"""


def _ingest(store, event: dict) -> None:
    store.ingest(IncomingEvent(event["jti"], "asgardeo", event["iat"], time.time(), tuple(event["events"]),
                               json.dumps(event).encode()), 86400)


def test_shadow_rules_record_would_send_and_queue_nothing(tmp_path: Path, capsys) -> None:
    config_path = basic_config(tmp_path)
    write_rules(tmp_path / "rules", RULES)
    config = load_config(config_path)
    store = open_store(config.store)
    metrics = Metrics()
    rules = StatefulRules(load_for_config(config), store)
    processor = Processor(store, Current(rules), metrics=metrics)
    events = [sample_event("login.loginSuccess"), sample_event("login.loginSuccess")]
    for event in events:
        _ingest(store, event)
    assert processor.run_once() == 2
    assert sorted(job.rule for job in store.list_jobs()) == ["live", "live"]
    records = {r["rule"]: r for r in store.get_event(events[1]["jti"]).decisions}
    assert records["quiet-run"]["shadow"] is True and records["quiet-run"]["matched"] is True
    assert records["quiet-run"]["actions"][0]["fields"] == {"message": "jane.doe@example.com signed in from "
                                                                       "198.51.100.23"}
    assert records["quiet-threshold"]["shadow"] is True and records["quiet-threshold"]["firing"]
    assert "shadow" not in records["live"]
    assert metrics.registry.get_sample_value("idhooks_actions_shadowed_total", {"rule": "quiet-run"}) == 4
    assert metrics.registry.get_sample_value("idhooks_actions_shadowed_total", {"rule": "quiet-threshold"}) == 1
    assert metrics.registry.get_sample_value("idhooks_actions_shadowed_total", {"rule": "live"}) is None
    store.close()

    assert main(["events", "show", events[1]["jti"], "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "  MATCH quiet-run (shadow: would send, nothing sent)\n    would send 0 log\n" \
           '      message: "jane.doe@example.com signed in from 198.51.100.23"\n    would send 1 log\n' in out
    assert "  MATCH quiet-threshold (shadow: would send, nothing sent)\n    would send 0 log\n" \
           '      message: "2 sign-ins"\n' in out
    assert "  MATCH live\n    action 0 log\n" in out


def test_idhooks_test_shows_shadow_rules_as_would_send(tmp_path: Path, capsys) -> None:
    config_path = basic_config(tmp_path)
    write_rules(tmp_path / "rules", RULES)
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(sample_event("login.loginSuccess")))
    assert main(["test", str(event_file), "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "  MATCH quiet-run (shadow: would send, nothing sent)\n    would send 0 log\n" in out


def test_a_bad_mode_is_a_load_error(tmp_path: Path) -> None:
    for value, hint in (("shadw", " (did you mean 'shadow'?)"), ("[shadow]", ""), ("true", ""), ("''", "")):
        found = problems(tmp_path / value.strip("[]'") , f"""
            rules:
              - id: r
                event: login.loginSuccess
                mode: {value}
                actions: [{{log: {{message: x}}}}]
        """)
        shown = {"[shadow]": "['shadow']", "true": "True", "''": "''"}.get(value, repr(value))
        assert found == [f"rules.yaml:4: rule 'r': mode: expected one of: live, shadow, got {shown}{hint}"]
