"""The cookbook's SCIM 2.0 recipe end to end, on each store: catalog events for one user go through the real
processor and a multi-threaded delivery worker to a loopback SCIM service provider (tests/service_peers.py),
which ends up exactly as Asgardeo says: created, updated, disabled, deleted by its own SCIM id. Also: a lost
201 (the retry's 409 counts as done), a delete without a captured id (a dead letter, no request), and a
failing create holding the user's later calls back until it is a dead letter."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from actions import build_actions
from actions.base import ActionContext
from engine.config.settings import DeliveryConfig
from engine.deliver.worker import DeliveryWorker
from engine.match.processor import Processor
from engine.match.stateful.evaluator import StatefulRules
from engine.metrics import Metrics
from engine.runtime import Current
from engine.secrets import Secret
from engine.store.base import IncomingEvent, Job, Store
from tests.store_backends import backend_params, config_for, open_backend
from engine.cli import main
from tests.conftest import ROOT, sample_event
from tests.rules_support import load
from tests.service_peers import ScimPeer

FAST = DeliveryConfig(workers=4, lease=30, retry_for=600, backoff_initial=0.05, backoff_max=0.1,
                      per_destination_concurrency=4, shutdown_grace=5)


def recipe() -> str:
    text = (ROOT / "docs" / "cookbook.md").read_text()
    section = text[text.index("## SCIM 2.0 provisioning"):]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


@pytest.fixture(params=backend_params())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_backend(request.param, request, tmp_path) as opened:
        yield opened


@pytest.fixture
def scim() -> Iterator[ScimPeer]:
    peer = ScimPeer()
    yield peer
    peer.close()


class Pipeline:
    """The recipe's rules, the processor and a 4-thread worker on `store`, sending to `scim`."""

    def __init__(self, store: Store, scim: ScimPeer, folder: Path, delivery: DeliveryConfig = FAST) -> None:
        destinations = {"scim": {"type": "http", "base_url": f"{scim.url}/scim/v2",
                                 "headers": {"Authorization": Secret(f"Bearer {ScimPeer.TOKEN}")}}}
        ruleset = load(folder, recipe(), destinations=destinations)
        self.store = store
        self.processor = Processor(store, Current(StatefulRules(ruleset, store)), metrics=Metrics())
        self.worker = DeliveryWorker(store, Current(build_actions(destinations, ActionContext())), delivery,
                                     Metrics(), poll_interval=0.02)
        self.at = time.time()

    def events(self, *aliases: str, user_id: str = "7c1e4b2a-5d3f-4e8a-9b6c-0f2d1a3e5b7c") -> None:
        """Store one catalog event per alias for `user_id`, arriving in this order."""
        for alias in aliases:
            event = sample_event(alias)
            body = next(iter(event["events"].values()))
            body["user"] = copy.deepcopy(body["user"]) | {"id": user_id}
            self.at += 0.001
            self.store.ingest(IncomingEvent(event["jti"], "asgardeo", event["iat"], self.at, tuple(event["events"]),
                                            json.dumps(event).encode()), 86400)

    def run(self, timeout: float = 20) -> list[Job]:
        """Evaluate, then deliver until no job is pending; every job."""
        self.processor.run_once()
        self.worker.start()
        deadline = time.monotonic() + timeout
        try:
            while any(job.status in ("pending", "failed") for job in self.store.list_jobs()):
                assert time.monotonic() < deadline, [(j.key, j.status, j.last_error) for j in self.store.list_jobs()]
                time.sleep(0.02)
        finally:
            self.worker.stop(5)
        return self.store.list_jobs()


def calls(scim: ScimPeer) -> list[str]:
    return [f"{r.method} {r.path}" for r in scim.requests]


def by_rule(jobs: list[Job]) -> dict[str, list[Job]]:
    found: dict[str, list[Job]] = {}
    for job in sorted(jobs, key=lambda j: (j.created_at, j.index)):
        found.setdefault(f"{job.rule}:{job.index}", []).append(job)
    return found


def test_create_update_disable_delete_reach_the_scim_id(store: Store, scim: ScimPeer, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    pipeline = Pipeline(store, scim, tmp_path / "rules")
    pipeline.events("user.userCreated", "user.userProfileUpdated", "user.userDisabled", "user.userEnabled",
                    "user.userDeleted")
    jobs = pipeline.run()
    assert {job.status for job in jobs} == {"done"}
    assert calls(scim) == ["POST /scim/v2/Users", "GET /scim/v2/Users", "PATCH /scim/v2/Users/scim-0001",
                           "PATCH /scim/v2/Users/scim-0001", "PATCH /scim/v2/Users/scim-0001",
                           "DELETE /scim/v2/Users/scim-0001"]
    created = scim.requests[0].json()
    assert created["externalId"] == "7c1e4b2a-5d3f-4e8a-9b6c-0f2d1a3e5b7c" and created["userName"] == "jane.doe@example.com"
    assert scim.requests[1].query == {"filter": ['externalId eq "7c1e4b2a-5d3f-4e8a-9b6c-0f2d1a3e5b7c"']}
    assert [r.json()["Operations"] for r in scim.requests[2:5]] == [
        [{"op": "replace", "path": "nickName", "value": "janie"}],
        [{"op": "replace", "path": "active", "value": False}], [{"op": "replace", "path": "active", "value": True}]]
    assert scim.users == {}
    created_jti = min(pipeline.store.list_events(), key=lambda e: e.received_at).jti
    shown = events_show(store, tmp_path, capsys, created_jti)
    assert "captured for ordered_by '7c1e4b2a-5d3f-4e8a-9b6c-0f2d1a3e5b7c': scim_id = \"scim-0001\"" in shown


def test_a_lost_201_then_409_is_done_and_the_lookup_keeps_the_id(store: Store, scim: ScimPeer, tmp_path: Path) -> None:
    scim.lose_next = 1  # the create is applied, its 201 never arrives
    pipeline = Pipeline(store, scim, tmp_path / "rules")
    pipeline.events("user.userCreated", "user.userDeleted")
    jobs = by_rule(pipeline.run())
    create = jobs["scim-create:0"][0]
    assert (create.status, create.attempts) == ("done", 2)
    assert calls(scim) == ["POST /scim/v2/Users", "POST /scim/v2/Users", "GET /scim/v2/Users",
                           "DELETE /scim/v2/Users/scim-0001"]
    assert scim.requests[0].headers["Idempotency-Key"] == scim.requests[1].headers["Idempotency-Key"]
    assert scim.users == {}


def test_a_delete_without_a_captured_id_is_a_dead_letter_and_never_sent(store: Store, scim: ScimPeer,
                                                                      tmp_path: Path) -> None:
    pipeline = Pipeline(store, scim, tmp_path / "rules")
    pipeline.events("user.userDeleted", user_id="never-provisioned")
    [job] = pipeline.run()
    assert job.status == "dead" and job.attempts == 1
    assert job.last_error.startswith("captured.scim_id missing for ordered_by 'never-provisioned'")
    assert scim.requests == []


def test_a_failing_create_holds_the_users_later_calls_until_it_is_a_dead_letter(
        store: Store, scim: ScimPeer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    scim.down_for.add("7c1e4b2a-5d3f-4e8a-9b6c-0f2d1a3e5b7c")
    short = DeliveryConfig(workers=4, lease=30, retry_for=0.3, backoff_initial=0.05, backoff_max=0.1,
                           per_destination_concurrency=4, shutdown_grace=5)
    pipeline = Pipeline(store, scim, tmp_path / "rules", short)
    pipeline.events("user.userCreated", "user.userDeleted")
    pipeline.events("user.userCreated", user_id="someone-else")
    jobs = by_rule(pipeline.run())
    mine = [job for job in jobs["scim-create:0"] if job.ordered_by != "someone-else"]
    assert mine[0].status == "dead" and mine[0].attempts >= 2
    [delete] = jobs["scim-delete:0"]
    assert delete.status == "dead" and "captured.scim_id missing" in delete.last_error
    assert all(r.method != "DELETE" for r in scim.requests)
    mine_calls = [f"{r.method} {r.query.get('filter', [''])[0]}" for r in scim.requests
                  if "someone-else" not in r.body.decode() + str(r.query)]
    assert mine_calls[-1] == 'GET externalId eq "7c1e4b2a-5d3f-4e8a-9b6c-0f2d1a3e5b7c"'  # only after the create died
    assert set(mine_calls[:-1]) == {"POST "} and len(mine_calls) >= 3
    assert [u["externalId"] for u in scim.users.values()] == ["someone-else"]  # not held up by the failing user
    shown = deliveries(store, tmp_path, capsys)
    assert {(j["key"].split(":")[1], j["status"]) for j in shown if j["ordered_by"] != "someone-else"} == {
        ("scim-create", "dead"), ("scim-delete", "dead"), ("scim-create", "done")}


def store_config(store: Store, tmp_path: Path) -> str:
    return str(config_for(store, tmp_path / "config.yaml"))


def deliveries(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture) -> list[dict[str, Any]]:
    """`idhooks deliveries --json` on `store`."""
    capsys.readouterr()
    assert main(["deliveries", "--json", "--config", store_config(store, tmp_path)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def events_show(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture, jti: str) -> str:
    capsys.readouterr()
    assert main(["events", "show", jti, "--config", store_config(store, tmp_path)]) == 0
    return capsys.readouterr().out
