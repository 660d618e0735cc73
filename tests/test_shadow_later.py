"""`mode: shadow` for firings that happen after the event was evaluated: an absence timer expiring and a digest
period ending fire from the server's tick. They are recorded on the stored event (the trigger of the timer, the
newest event of the digest), so `idhooks events show`, GET /api/v1/events/{jti} and the console show what would have
been sent; nothing is queued and idhooks_actions_shadowed_total counts them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import falcon.testing

from engine.cli import main
from engine.config.settings import load_config
from engine.offline.report import when
from engine.server import Service
from engine.store import open_store
from tests.api_support import OPERATOR_TOKEN, api_config, login_event
from tests.conftest import signed
from tests.test_console import log_in

HOSTILE = "<script>alert(1)</script>\r\nX-Injected: yes"
ABSENCE = """
rules:
  - id: quiet-never-signed-in
    event: registration.registrationSuccess
    mode: shadow
    absence: {expect: {event: login.loginSuccess}, group_by: [user_id], within: 1h}
    actions: [{log: {message: "{{ username }} registered {{ within }} ago and never signed in"}}]
  - id: never-signed-in
    event: registration.registrationSuccess
    absence: {expect: {event: login.loginSuccess}, group_by: [user_id], within: 1h}
    actions: [{log: {message: "live: {{ user_id }}"}}]
"""
DIGEST = """
rules:
  - id: quiet-hourly
    event: registration.registrationSuccess
    mode: shadow
    digest: {every: 1h}
    actions: [{log: {message: "{{ count }} registrations: {{ events | map(attribute='username') | join(', ') }}"}}]
  - id: hourly
    event: registration.registrationSuccess
    digest: {every: 1h}
    actions: [{log: {message: "{{ count }} registrations"}}]
"""


class Server:
    """The real Service (intake, processor, tick, API, console) on a clock the test moves."""

    def __init__(self, folder: Path, rules: str) -> None:
        self.config_path = api_config(folder, rules=rules)
        self.now = time.time()
        config = load_config(self.config_path)
        self.service = Service(config, open_store(config.store), clock=lambda: self.now)
        self.client = falcon.testing.TestClient(self.service.app)

    def register(self, username: str, user_id: str, age: float = 0.0) -> dict[str, Any]:
        event = login_event(username, user_id=user_id, alias="registration.registrationSuccess")
        event["iat"] = int((self.now - age) * 1000)
        body, headers = signed(event)
        assert self.client.simulate_post("/webhooks/asgardeo", body=body, headers=headers).status_code == 202
        self.service.processor.run_once()
        return event

    def shadowed(self, rule: str) -> float | None:
        return self.service.metrics.registry.get_sample_value("idhooks_actions_shadowed_total", {"rule": rule})

    def show(self, jti: str, capsys: Any) -> str:
        self.service.store.close()
        assert main(["events", "show", jti, "--config", str(self.config_path)]) == 0
        return capsys.readouterr().out


def test_a_shadow_absence_timer_is_recorded_on_its_registration_event(tmp_path: Path, capsys: Any) -> None:
    server = Server(tmp_path, ABSENCE)
    event = server.register(HOSTILE, "u1")
    expires = event["iat"] / 1000 + 3600
    server.now += 3599
    server.service.tick()
    assert server.shadowed("quiet-never-signed-in") is None
    server.now += 1
    server.service.tick()
    server.service.tick()  # fired once
    assert [job.rule for job in server.service.store.list_jobs()] == ["never-signed-in"]  # the shadow rule queues nothing
    assert server.shadowed("quiet-never-signed-in") == 1

    decisions = server.client.simulate_get(f"/api/v1/events/{event['jti']}",
                                           headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}).json["decisions"]
    [shadow] = [d for d in decisions if d["rule"] == "quiet-never-signed-in" and d["matched"]]
    assert shadow["shadow"] is True and shadow["fired_by"] == "timer" and shadow["fired_at"] == expires
    assert shadow["firing"].endswith(":absence") and shadow["appended_at"] == server.now
    assert shadow["actions"] == [{"index": 0, "type": "log", "destination": None,
                                  "fields": {"message": f"{HOSTILE} registered 1h ago and never signed in"}}]
    [live] = [d for d in decisions if d["rule"] == "never-signed-in" and d["matched"]]
    assert "shadow" not in live and live["actions"][0]["fields"] == {"message": "live: u1"}

    html = server.client.simulate_get(f"/console/events/{event['jti']}",
                                      headers=log_in(server, OPERATOR_TOKEN)).text  # type: ignore[arg-type]
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\r\\nX-Injected: yes registered 1h ago" in html
    assert 'quiet-never-signed-in</strong> matched <em class="shadow">shadow: would send, nothing queued</em> ' \
           '<span class="later">fired later: absence timer expired ' in html
    assert "<li>would send 0 log" in html

    out = server.show(event["jti"], capsys)
    assert f"  MATCH quiet-never-signed-in (shadow: would send, nothing sent), later: absence timer expired " \
           f"{when(expires)}\n    would send 0 log\n" \
           '      message: "<script>alert(1)</script>\\r\\nX-Injected: yes registered 1h ago and never signed in"\n' in out
    assert f"  MATCH never-signed-in, later: absence timer expired {when(expires)}\n    action 0 log\n" in out
    assert "\r" not in out

    assert main(["replay", "--since", "1d", "--config", str(server.config_path), "--json"]) == 0
    [replayed] = [r for r in json.loads(capsys.readouterr().out) if r.get("jti") == event["jti"]]
    assert replayed["no_longer"] == []  # a later firing is no match of the event itself


def test_a_cancelled_timer_records_nothing(tmp_path: Path, capsys: Any) -> None:
    server = Server(tmp_path, ABSENCE)
    event = server.register("ann", "u1")
    signed_in = login_event("ann", user_id="u1", alias="login.loginSuccess")
    body, headers = signed(signed_in)
    assert server.client.simulate_post("/webhooks/asgardeo", body=body, headers=headers).status_code == 202
    server.service.processor.run_once()
    server.now += 7200
    server.service.tick()
    assert server.service.store.list_jobs() == [] and server.shadowed("quiet-never-signed-in") is None
    assert "later:" not in server.show(event["jti"], capsys)


def test_a_shadow_digest_is_recorded_on_the_newest_event_of_its_period(tmp_path: Path, capsys: Any) -> None:
    server = Server(tmp_path, DIGEST)
    server.now = (server.now // 3600) * 3600 + 1800  # mid-period: both events fall in one period
    first = server.register("ann", "u1", age=2)
    second = server.register("bob", "u2", age=1)
    server.now += 3600
    server.service.tick()
    assert [job.rule for job in server.service.store.list_jobs()] == ["hourly"]
    assert server.shadowed("quiet-hourly") == 1 and server.shadowed("hourly") is None
    end = (server.now // 3600) * 3600
    assert [d for d in server.service.store.get_event(first["jti"]).decisions if d.get("matched")] == []
    out = server.show(second["jti"], capsys)
    assert f"  MATCH quiet-hourly (shadow: would send, nothing sent), later: digest period ended {when(end)}\n" \
           '    would send 0 log\n      message: "2 registrations: ann, bob"\n' in out
    assert f"  MATCH hourly, later: digest period ended {when(end)}\n    action 0 log\n" in out


def test_a_firing_whose_event_is_not_recorded_yet_waits_for_its_evaluation(tmp_path: Path) -> None:
    """The processor evaluated the registration (its timer started) but had not recorded the decisions when
    the timer expired: writing the firing then would be overwritten by the evaluation's decision list, so it
    waits and is added on the next tick after the evaluation is recorded."""
    server = Server(tmp_path, ABSENCE)
    event = login_event("late", user_id="u9", alias="registration.registrationSuccess")
    event["iat"] = int(server.now * 1000)
    body, headers = signed(event)
    assert server.client.simulate_post("/webhooks/asgardeo", body=body, headers=headers).status_code == 202
    store = server.service.store
    [pending] = store.claim_events("slow-processor", 60, 10, server.now)
    records, jobs = server.service.processor.evaluate(pending)  # the timers start here
    server.now += 3600
    server.service.tick()
    assert store.get_event(event["jti"]).decisions is None  # not written over the coming evaluation
    store.complete_events([(event["jti"], records, jobs)], server.now)
    server.service.tick()
    decisions = store.get_event(event["jti"]).decisions
    assert [(d["rule"], "fired_by" in d) for d in decisions] == [
        ("quiet-never-signed-in", False), ("never-signed-in", False),
        ("quiet-never-signed-in", True), ("never-signed-in", True)]
    server.service.tick()
    assert len(store.get_event(event["jti"]).decisions) == 4  # recorded once
