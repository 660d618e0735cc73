"""Stateful keys inside the rules engine: load errors, template names, the processor's jobs (firing ids as
job keys, no double send after a re-evaluation), the digest tick, and `idhooks test` with ordered events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.config.settings import load_config
from engine.runtime import Current
from engine.metrics import Metrics
from engine.match.processor import Processor
from engine.server import Service
from engine.match.stateful.evaluator import StatefulRules
from engine.store.base import IncomingEvent
from engine.store.sqlite import SQLiteStore
from tests.conftest import ROOT, basic_config, sample_event
from tests.rules_support import load, problems

BRUTE = """
rules:
  - id: brute
    event: login.loginFailed
    threshold: {count: 3, within: 10m, group_by: [claims.username]}
    actions:
      - log: {message: "{{ count }} failures for {{ group[0] }} in {{ window }}"}
"""
DIGEST = """
rules:
  - id: hourly
    event: registration.registrationSuccess
    digest: {every: 1h}
    actions:
      - log: {message: "{{ count }} registrations: {{ events | map(attribute='username') | join(', ') }}"}
"""


def test_stateful_key_errors_name_file_line_rule_and_field(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        rules:
          - id: r
            event: login.loginFailed
            threshold: {count: 3, within: 10m, group_by: ['$.a[']}
            digest: {evry: 1h}
            actions:
              - log: {message: "{{ count }}"}
        """) == [
        "rules.yaml:4: rule 'r': threshold.group_by[0]: invalid JSONPath '$.a[': Parse error near the end of string!",
        "rules.yaml:5: rule 'r': digest.evry: unknown key (did you mean 'every'?); expected one of: every, "
        "max_items, late",
        "rules.yaml:5: rule 'r': digest: missing 'every' (a duration like 30s, 10m, 1h)",
        "rules.yaml:5: rule 'r': digest: cannot be combined with 'threshold': a digest already sends one message "
        "per period",
    ]


def test_firing_names_are_load_errors_in_a_plain_rule(tmp_path: Path) -> None:
    found = problems(tmp_path, BRUTE.replace("    threshold: {count: 3, within: 10m, group_by: [claims.username]}\n", ""))
    assert len(found) == 1
    assert found[0].startswith("rules.yaml:5: rule 'brute': actions[0].log.message: unknown template name 'count'")


def _ingest(store: SQLiteStore, alias: str, jti: str, at: float, **body: Any) -> None:
    event = sample_event(alias, **body)
    event["jti"], event["iat"] = jti, int(at * 1000)
    store.ingest(IncomingEvent(jti, "asgardeo", at * 1000, at, tuple(event["events"]),
                               json.dumps(event).encode()), dedup_window=10 ** 9)


def test_the_processor_sends_one_job_per_firing_even_when_an_event_is_evaluated_again(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    rules = StatefulRules(load(tmp_path / "rules", BRUTE), store)
    processor = Processor(store, Current(rules), metrics=Metrics(), clock=lambda: 1_800_000_100.0)
    for i in range(4):
        _ingest(store, "login.loginFailed", f"e{i}", 1_800_000_000.0 + i * 60)
    assert processor.run_once() == 4
    [job] = store.list_jobs()
    assert job.message == {"message": "3 failures for jane.doe@example.com in 10m"}
    assert job.key.startswith("brute:") and job.key.endswith(":1800000000000:0")
    assert store.get_event("e1").decisions[0]["failed"] == "threshold: count 2 of 3 within 10m"
    assert store.get_event("e3").decisions[0]["failed"] == "threshold: count 1 of 3 within 10m"
    records, jobs = processor.evaluate(store.get_event("e2"))  # a crash after the state was saved
    store.complete_event("e2", records, jobs, 1_800_000_200.0)
    assert [j.key for j in store.list_jobs()] == [job.key]
    store.close()


def test_the_digest_tick_enqueues_each_period_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    rules = StatefulRules(load(tmp_path / "rules", DIGEST), store)
    processor = Processor(store, Current(rules), metrics=Metrics(), clock=lambda: 1_800_000_100.0)
    for i, name in enumerate(["ann", "bob"]):
        _ingest(store, "registration.registrationSuccess", f"r{i}", 1_800_000_000.0 + i,
                user={"claims": [{"uri": "http://wso2.org/claims/username", "value": name}]})
    processor.run_once()
    assert store.list_jobs() == []
    assert rules.fire_due_digests(1_800_000_000.0 + 1800) == 0
    assert rules.fire_due_digests(1_800_003_660.0) == 1
    assert rules.fire_due_digests(1_800_003_660.0) == 0
    [job] = store.list_jobs()
    assert job.message == {"message": "2 registrations: ann, bob"}
    assert job.key == "hourly:digest:1800000000:0"
    store.close()


def test_the_server_ticks_digests_by_its_clock_and_keeps_them_across_a_reload(tmp_path: Path) -> None:
    config_path = basic_config(tmp_path)
    (tmp_path / "rules" / "hourly.yaml").write_text(DIGEST)
    now = [1_800_000_100.0]
    store = SQLiteStore(tmp_path / "store.db")
    service = Service(load_config(config_path), store, clock=lambda: now[0])
    _ingest(store, "registration.registrationSuccess", "r0", 1_800_000_000.0)
    service.processor.run_once()
    service.tick()
    assert store.list_jobs() == []
    now[0] = 1_800_003_660.0
    service.tick()
    assert [job.key for job in store.list_jobs()] == ["hourly:digest:1800000000:0"]
    assert service.reload() and list(service.rules.get().digests) == ["hourly"]
    store.close()


def test_idhooks_test_evaluates_event_files_in_order_as_one_stream(tmp_path: Path) -> None:
    config = basic_config(tmp_path)
    (tmp_path / "rules" / "brute.yaml").write_text(BRUTE)
    files = []
    for i in range(3):
        event = sample_event("login.loginFailed")
        event["iat"] = 1_800_000_000_000 + i * 60_000
        files.append(tmp_path / f"e{i}.json")
        files[-1].write_text(json.dumps(event))
    result = subprocess.run([sys.executable, "-m", "engine", "test", "--config", str(config), "--json",
                             *map(str, files)], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.returncode == 0, result.stderr
    decisions = [item["decisions"][0] for item in json.loads(result.stdout)]
    assert [d["matched"] for d in decisions] == [False, False, True]
    assert decisions[0]["failed"] == "threshold: count 1 of 3 within 10m"
    assert decisions[2]["actions"][0]["fields"] == {"message": "3 failures for jane.doe@example.com in 10m"}

