"""Provisioning keys with attacker-chosen values, through the real worker and a loopback target: a captured
id is one path segment whatever it holds, an answer cannot grow the store or crash the capture, a forged
placeholder in event data stays text, `success_statuses` and `capture` are checked at load."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from actions import build_actions
from actions.base import ActionContext
from actions.http import HttpAction
from engine.config.settings import DeliveryConfig
from engine.deliver.worker import DeliveryWorker
from engine.match.jobs import jobs_for
from engine.metrics import Metrics
from engine.runtime import Current
from engine.store.base import Job
from engine.store.sqlite import SQLiteStore
from tests.peers import HttpPeer, Response, http_peer  # noqa: F401 - fixture
from tests.rules_support import decide, envelope, load

DELIVERY = DeliveryConfig(workers=1, lease=30, retry_for=600, backoff_initial=5, backoff_max=60,
                          per_destination_concurrency=1, shutdown_grace=5)
RULES = """
rules:
  - id: lifecycle
    event: login.loginFailed
    actions:
      - http: {to: target, ordered_by: "{{ event.who }}", path: /Users, capture: {scim_id: $.id}}
      - http: {to: target, ordered_by: "{{ event.who }}", method: DELETE,
               path: "/Users/{{ captured.scim_id }}/{{ event.extra }}"}
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    db = SQLiteStore(tmp_path / "idhooks.db")
    yield db
    db.close()


def run(store: SQLiteStore, peer: HttpPeer, tmp_path: Path, **event: str) -> list[Job]:
    destinations = {"target": {"type": "http", "base_url": f"{peer.url}/scim/v2"}}
    ruleset = load(tmp_path / "rules", RULES, destinations=destinations)
    decision = decide(ruleset, envelope(**event))["lifecycle"]
    store.enqueue_jobs(jobs_for("jti-1", 1.0, decision), 1.0)
    worker = DeliveryWorker(store, Current(build_actions(destinations, ActionContext())), DELIVERY, Metrics())
    worker.run_once()
    return sorted(store.list_jobs(), key=lambda job: job.index)


@pytest.mark.parametrize("scim_id", ["../../admin?x=1#frag", "a/b?c#d", "%2e%2e", "x\r\nX-Evil: 1", "\u202e\ud800", "*"])
def test_a_hostile_captured_id_is_one_path_segment(store: SQLiteStore, http_peer: HttpPeer, tmp_path: Path,
                                                   scim_id: str) -> None:
    http_peer.script.append(Response(201, {"id": scim_id}))
    create, delete = run(store, http_peer, tmp_path, who="alice", extra="ok")
    assert create.status == "done"
    if ".." in scim_id or "%2e" in scim_id:  # a dot segment once decoded: refused, nothing sent
        assert delete.status == "dead" and "refused path" in delete.last_error and len(http_peer.requests) == 1
        return
    assert delete.status == "done"
    path = http_peer.requests[1].path
    assert path.startswith("/scim/v2/Users/") and path.endswith("/ok") and path.count("/") == 5
    assert "\r" not in path and "\n" not in path and "?" not in path and "#" not in path


def test_a_forged_placeholder_in_event_data_stays_text(store: SQLiteStore, http_peer: HttpPeer,
                                                       tmp_path: Path) -> None:
    http_peer.script.append(Response(201, {"id": "real-id"}))
    run(store, http_peer, tmp_path, who="alice", extra="{{ captured.scim_id }}GHJK73636964GHJK")
    assert http_peer.requests[1].path == ("/scim/v2/Users/real-id/%7B%7B%20captured.scim_id%20%7D%7D"
                                          "GHJK73636964GHJK")


@pytest.mark.parametrize("answer", [b"[" * 60_000, b'{"id": "' + b"x" * 5000 + b'"}', b"not json", b""])
def test_an_answer_that_cannot_be_captured_keeps_nothing_and_the_next_job_is_a_dead_letter(
        store: SQLiteStore, http_peer: HttpPeer, tmp_path: Path, answer: bytes) -> None:
    http_peer.script.append(Response(201, answer))
    create, delete = run(store, http_peer, tmp_path, who="alice", extra="x")
    assert create.status == "done"  # delivered: the answer only had nothing to keep
    assert delete.status == "dead" and delete.last_error.startswith("captured.scim_id missing for ordered_by 'alice'")
    assert len(http_peer.requests) == 1


def test_an_empty_ordered_by_is_unordered_and_cannot_capture(store: SQLiteStore, http_peer: HttpPeer,
                                                             tmp_path: Path) -> None:
    http_peer.script.append(Response(201, {"id": "i"}))
    create, delete = run(store, http_peer, tmp_path, who="", extra="x")
    assert create.ordered_by == "" and create.status == "done"
    assert delete.status == "dead" and "captured.scim_id missing" in delete.last_error


@pytest.mark.parametrize(("fields", "problem"), [
    ({"success_statuses": [201, "409"]}, "success_statuses: expected a list of HTTP statuses (100-599), got [201, '409']"),
    ({"success_statuses": [99]}, "success_statuses: expected a list of HTTP statuses (100-599), got [99]"),
    ({"success_statuses": 409}, "success_statuses: expected a list of HTTP statuses (100-599), got 409"),
    ({"capture": {"id": "$.id"}}, "capture: needs ordered_by (captured values are stored under that key, "
                                  "e.g. ordered_by: '{{ user_id }}')"),
    ({"capture": {"bad name": "$.id"}, "ordered_by": "x"},
     "capture.bad name: a name is letters, digits and '_' (not first), at most 64"),
    ({"capture": {"id": "$..[?("}, "ordered_by": "x"}, "capture.id: not a JSONPath: '$..[?(' (JsonPathParserError)"),
    ({"capture": {f"n{i}": "$.id" for i in range(17)}, "ordered_by": "x"},
     "capture: expected a mapping of 1-16 names to JSONPaths, like {scim_id: $.id}"),
])
def test_load_time_checks(fields: dict, problem: str) -> None:
    assert problem in HttpAction.check_rule_fields(fields)


def test_captured_without_ordered_by_is_a_load_error(tmp_path: Path) -> None:
    from tests.rules_support import problems

    found = problems(tmp_path, """
        rules:
          - id: r
            event: login.loginFailed
            actions:
              - http: {to: target, method: DELETE, path: "/Users/{{ captured.scim_id }}"}
        """, destinations={"target": {"type": "http"}})
    assert found == ["rules.yaml:5: rule 'r': actions[0].http: captured: a template uses captured values, which are "
                     "stored per key: add ordered_by (e.g. ordered_by: '{{ user_id }}')"]
