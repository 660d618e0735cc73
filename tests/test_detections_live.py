"""sequence, new_value and absence through the live pieces: the processor and the server's tick (jobs
created once, shadow counted), composition with suppress, `idhooks test --advance` and `idhooks replay`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from engine.cli import main
from engine.config.settings import load_config
from engine.match.loader import load_for_config
from engine.match.processor import Processor
from engine.match.stateful.evaluator import StatefulRules
from engine.metrics import Metrics
from engine.runtime import Current
from engine.server import Service
from engine.store import open_store
from engine.store.base import IncomingEvent
from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, sample_event
from tests.rules_support import load, write_rules

T0 = 1_800_000_000.0
USER = "http://wso2.org/claims/username"

ABSENCE = """
rules:
  - id: registered-never-signed-in
    event: registration.registrationSuccess
    absence:
      expect: {event: login.loginSuccess}
      group_by: [user_id]
      within: 24h
    actions: [{log: {message: "{{ username }} registered {{ within }} ago and never signed in (expired {{ expired_at.isoformat() }})"}}]
  - id: quiet-absence
    event: registration.registrationSuccess
    mode: shadow
    absence: {expect: {event: login.loginSuccess}, group_by: [user_id], within: 24h}
    actions: [{log: {message: "{{ username }}"}}]
"""


def _ingest(store: Any, alias: str, jti: str, at: float, **body: Any) -> None:
    event = sample_event(alias, **body)
    event["jti"], event["iat"] = jti, int(at * 1000)
    store.ingest(IncomingEvent(jti, "asgardeo", at * 1000, at, tuple(event["events"]),
                               json.dumps(event).encode()), dedup_window=10 ** 9)


def test_an_absence_timer_fires_once_from_the_tick_and_an_expected_event_cancels_another(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    metrics = Metrics()
    clock = [T0]
    rules = StatefulRules(load(tmp_path / "rules", ABSENCE), store,
                          on_shadowed=lambda d: metrics.actions_shadowed.labels(d.rule_id).inc(len(d.actions)))
    processor = Processor(store, Current(rules), metrics=metrics, clock=lambda: clock[0])
    _ingest(store, "registration.registrationSuccess", "reg-1", T0, user={"id": "u1", "claims": [
        {"uri": USER, "value": "ann"}]})
    _ingest(store, "registration.registrationSuccess", "reg-2", T0 + 1, user={"id": "u2", "claims": [
        {"uri": USER, "value": "bob"}]})
    _ingest(store, "login.loginSuccess", "login-2", T0 + 3600, user={"id": "u2"})
    assert processor.run_once() == 3
    record = store.get_event("reg-1").decisions[0]
    assert record["failed"].startswith("absence: timer started: fires at 2027-01-16T08:00:00+00:00 unless "
                                       "login.loginSuccess arrives for this group")
    assert store.get_event("login-2").decisions[0]["failed"] == "absence: the expected event arrived: timer cancelled"
    assert rules.tick(T0 + 86399) == 0
    assert rules.tick(T0 + 86400) == 2          # ann's live and shadow timers (the shadow one sends nothing)
    assert rules.tick(T0 + 86400 + 3600) == 0   # each timer fires once
    [job] = store.list_jobs()
    assert job.message["message"] == \
        "ann registered 1d ago and never signed in (expired 2027-01-16T08:00:00+00:00)"
    assert job.key.startswith("registered-never-signed-in:") and job.key.endswith(":absence:0")
    assert metrics.registry.get_sample_value("idhooks_actions_shadowed_total", {"rule": "quiet-absence"}) == 1
    store.close()


def test_a_timer_claimed_by_a_process_that_died_is_fired_by_another_with_the_same_job_key(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    rules = StatefulRules(load(tmp_path / "rules", ABSENCE), store)
    env_store = store
    _ingest(env_store, "registration.registrationSuccess", "reg-1", T0, user={"id": "u1"})
    Processor(store, Current(rules), metrics=Metrics(), clock=lambda: T0).run_once()
    died = store.timers_claim(T0 + 86400, 60, 10)   # a process claimed both timers, then was killed
    assert len(died) == 2
    assert rules.tick(T0 + 86430) == 0              # still its lease
    assert rules.tick(T0 + 86461) == 2              # the lease ended: fired by the survivor
    assert rules.tick(T0 + 86461 + 3600) == 0
    assert len(store.list_jobs()) == 1
    store.close()


SUPPRESSED = """
rules:
  - id: takeover
    sequence:
      group_by: [claims.username]
      within: 15m
      steps: [{event: login.loginFailed, count: 2}, {event: login.loginSuccess}]
    suppress: {for: 1h}
    actions: [{log: {message: "{{ group[0] }} after {{ steps[0].count }} failures, started {{ started.isoformat() }}"}}]
  - id: new-app
    event: login.loginSuccess
    new_value: {of: $.application.name, group_by: [claims.username], lookback: 30d}
    suppress: {for: 1h}
    actions: [{log: {message: "{{ value }} for {{ group[0] }} since {{ group_since.isoformat() }}"}}]
"""


def _evaluate(rules: StatefulRules, alias: str, at: float, jti: str, **body: Any) -> dict[str, Any]:
    from engine.verify.envelope import envelope_from_claims
    event = sample_event(alias, **body)
    event["jti"], event["iat"] = jti, int(at * 1000)
    env = envelope_from_claims(event)
    return {d.rule_id: d for d in rules.evaluate(env, env.uris[0], "asgardeo", now=at)}


def test_sequence_and_new_value_compose_with_suppress(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    rules = StatefulRules(load(tmp_path / "rules", SUPPRESSED), store)
    fired = []
    for round_, start in enumerate((T0, T0 + 600, T0 + 4000)):
        for i in range(2):
            _evaluate(rules, "login.loginFailed", start + i, f"f{round_}{i}")
        fired.append(_evaluate(rules, "login.loginSuccess", start + 10, f"s{round_}",
                               application={"name": f"app-{round_}"}))
    first, second, third = fired
    assert first["takeover"].actions[0].fields["message"] == \
        "jane.doe@example.com after 2 failures, started 2027-01-15T08:00:00+00:00"
    assert second["takeover"].failed == "sequence: suppressed: fired for this group less than 1h ago"
    assert third["takeover"].matched
    assert first["new-app"].actions[0].fields["message"] == \
        "app-0 for jane.doe@example.com since 2027-01-15T08:00:10+00:00"
    assert second["new-app"].failed == "new_value: suppressed: fired for this group less than 1h ago"
    assert third["new-app"].matched
    store.close()


def test_idhooks_test_advance_and_replay_fire_absence_timers(tmp_path: Path, capsys) -> None:
    config_path = basic_config(tmp_path)
    write_rules(tmp_path / "rules", ABSENCE)
    registration = sample_event("registration.registrationSuccess")
    (tmp_path / "reg.json").write_text(json.dumps(registration))
    assert main(["test", str(tmp_path / "reg.json"), "--config", str(config_path), "--advance", "25h"]) == 0
    out = capsys.readouterr().out
    assert "(clock advanced 25h): timers and digests due\n  MATCH registered-never-signed-in\n" in out
    assert "  MATCH quiet-absence (shadow: would send, nothing sent)\n" in out
    assert main(["test", str(tmp_path / "reg.json"), "--config", str(config_path), "--advance", "23h"]) == 0
    assert "timers and digests due\n  nothing due\n" in capsys.readouterr().out

    config = load_config(config_path)
    store = open_store(config.store)
    registration["iat"] = int((time.time() - 2 * 86400) * 1000)
    store.ingest(IncomingEvent(registration["jti"], "asgardeo", registration["iat"], time.time() - 2 * 86400,
                               tuple(registration["events"]), json.dumps(registration).encode()), 10 ** 9)
    store.close()
    assert main(["replay", "--since", "3d", "--config", str(config_path), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    timers = [r for r in results if r["type"] == "timer expired"]
    assert [r["fired"][0]["rule"] for r in timers] == ["registered-never-signed-in", "quiet-absence"]
    assert timers[1]["fired"][0]["shadow"] is True


def test_the_service_tick_fires_timers_and_counts_bounds(tmp_path: Path) -> None:
    config_path = basic_config(tmp_path)
    write_rules(tmp_path / "rules", ABSENCE)
    config = load_config(config_path)
    clock = [T0]
    service = Service(config, open_store(config.store), clock=lambda: clock[0])
    _ingest(service.store, "registration.registrationSuccess", "reg-1", T0, user={"id": "u1"})
    service.processor.run_once()
    clock[0] = T0 + 86400
    service.tick()
    assert [job.rule for job in service.store.list_jobs()] == ["registered-never-signed-in"]
    assert service.metrics.registry.get_sample_value("idhooks_actions_shadowed_total",
                                                     {"rule": "quiet-absence"}) == 1
    service.store.close()
    assert load_for_config(config).rules[0].id == "registered-never-signed-in"


def test_absence_composes_with_suppress(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    rules = StatefulRules(load(tmp_path / "rules", """
        rules:
          - id: never-signed-in
            event: registration.registrationSuccess
            absence: {expect: {event: login.loginSuccess}, group_by: [user_id], within: 1h}
            suppress: {for: 1d, group_by: [$.tenant.name]}
            actions: [{log: {message: "{{ user_id }} never signed in"}}]
    """), store)
    for i, user in enumerate(("u1", "u2")):
        _evaluate(rules, "registration.registrationSuccess", T0 + i, f"r{i}", user={"id": user})
    fired: list = []
    assert rules.tick(T0 + 3601, send=fired.append) == 1   # one tenant: the second firing is suppressed
    assert [d.actions[0].fields["message"] for d in fired] == ["u1 never signed in"]
    _evaluate(rules, "registration.registrationSuccess", T0 + 2 * 86400, "r2", user={"id": "u3"})
    assert rules.tick(T0 + 2 * 86400 + 3600, send=fired.append) == 1   # a day later: fires again
    store.close()
