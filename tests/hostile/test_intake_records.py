"""What intake records about odd but signed events (issue 12, item 16): an `iat` in seconds is read as
seconds, warned about, counted and noted in the decision record; a `jti` repeated with other content is a
conflict (logged, counted, kept in the quarantine), while a true redelivery stays a duplicate."""

from __future__ import annotations

import json
import logging

import pytest

from engine.cli import main
from engine.server import Service
from tests.conftest import sample_event, signed
from tests.hostile.support import App


@pytest.fixture
def app(tmp_path):
    a = App(tmp_path)
    yield a
    a.store.close()


def test_an_iat_in_seconds_is_evaluated_warned_counted_and_noted_in_the_decision(app, caplog, capsys):
    caplog.set_level(logging.WARNING, logger="idhooks")
    event = sample_event()
    event["iat"] = int(app.now)  # seconds: read as milliseconds it would be January 1970, i.e. stale
    result = app.post(*signed(event))
    assert (result.status_code, result.json["status"]) == (202, "accepted")
    assert app.metric('idhooks_iat_in_seconds_total{webhook="asgardeo"}') == 1
    assert "looks like epoch seconds" in str([r.warnings for r in caplog.records if hasattr(r, "warnings")])
    service = Service(app.config, app.store, clock=lambda: app.now)
    assert service.processor.run_once() == 1
    stored = app.store.get_event(event["jti"])
    assert stored.status == "processed" and stored.iat_ms == event["iat"] * 1000
    assert stored.decisions[0] == {"warning": f"'iat' {event['iat']} looks like epoch seconds, not milliseconds: "
                                              f"read as {event['iat']} seconds"}
    app.store.close()
    assert main(["events", "show", event["jti"], "--config", str(app.config_path)]) == 0
    assert "warning: 'iat' " in capsys.readouterr().out


def test_an_iat_in_milliseconds_gets_no_warning(app):
    assert app.post(*signed(sample_event())).json["status"] == "accepted"
    assert app.metric('idhooks_iat_in_seconds_total{webhook="asgardeo"}') == 0


def test_the_same_jti_with_other_content_is_a_conflict_kept_for_inspection(app, caplog, capsys):
    caplog.set_level(logging.WARNING, logger="idhooks")
    first = sample_event()
    assert app.post(*signed(first)).json["status"] == "accepted"
    forged = json.loads(json.dumps(first))
    next(iter(forged["events"].values()))["user"] = {"id": "someone-else"}
    result = app.post(*signed(forged))
    assert (result.status_code, result.json["status"]) == (202, "conflict")
    assert app.metric('idhooks_deliveries_received_total{outcome="conflict",webhook="asgardeo"}') == 1
    assert any(r.getMessage().startswith("jti conflict") for r in caplog.records)
    assert json.loads(app.store.get_event(first["jti"]).body) == first  # the stored event is untouched
    [kept] = app.store.quarantine_list()
    assert json.loads(kept.body) == forged and kept.reason.startswith(f"jti conflict: event '{first['jti']}'")
    app.store.close()
    assert main(["quarantine", "list", "--config", str(app.config_path)]) == 0
    assert "jti conflict" in capsys.readouterr().out
    assert main(["quarantine", "reverify", "--config", str(app.config_path)]) == 0
    assert "stored with different content; kept" in capsys.readouterr().out


def test_a_reserialised_redelivery_is_a_duplicate_not_a_conflict(app):
    event = sample_event()
    assert app.post(*signed(event)).json["status"] == "accepted"
    again = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
    assert app.post(*signed(again)).json["status"] == "duplicate"
    assert app.store.quarantine_list() == []
