"""Unauthenticated growth through the hub's verification GETs (issue 12, items 1, 12 and 19): nothing a
caller sends without a signature is kept unless its topic is agreed; what is kept is bounded in length and
number; metric labels come from a closed set; /metrics and `idhooks subscriptions` stay small."""

from __future__ import annotations

import logging

import pytest

from engine.cli import main
from engine.receive.websub import MAX_REASON_CHARS
from tests.conftest import sample_event, signed
from tests.hostile.support import TOPIC, App

BIG = "x" * 60_000


@pytest.fixture
def app(tmp_path):
    a = App(tmp_path, extra="subscriptions: {max_records: 5}")
    yield a
    a.store.close()


def db_bytes(app: App) -> int:
    return sum(p.stat().st_size for p in (app.tmp_path / "var").glob("idhooks.db*"))


@pytest.mark.parametrize("mode", ["denied", "hub-error"])
def test_notices_for_topics_not_agreed_are_answered_and_logged_but_not_stored(app, caplog, mode):
    caplog.set_level(logging.WARNING, logger="idhooks")
    for i in range(50):
        assert app.hub(mode=mode, topic=f"globex.{i}.{BIG[:200]}", reason=BIG).status_code == 200
    assert app.store.list_subscriptions() == []
    assert sum(r.getMessage() == f"hub notice: subscription {mode}" and r.kept is False
               for r in caplog.records) == 50


def test_oversized_topics_are_refused_and_oversized_reasons_are_cut(app):
    before = db_bytes(app)
    for _ in range(200):
        assert app.hub(mode="denied", topic=BIG, reason=BIG).status_code == 400
    assert app.hub(mode="denied", topic=TOPIC, reason=BIG).status_code == 200
    [record] = app.store.list_subscriptions()
    assert record.reason == "x" * MAX_REASON_CHARS + " [cut]"
    assert db_bytes(app) - before < 200_000  # the review saw 38 MB from these 200 requests


def test_subscribes_to_many_matching_topics_keep_at_most_max_records_and_lease_series(app, caplog):
    caplog.set_level(logging.WARNING, logger="idhooks")
    for i in range(40):
        app.now += 1
        topic = f"acme.{i}.schema.wso2.v1.event.login"
        result = app.hub(mode="subscribe", topic=topic, challenge=f"c{i}", lease_seconds="864000")
        assert (result.status_code, result.text) == (200, f"c{i}")  # answering needs no storage
    records = app.store.list_subscriptions()
    assert sorted(r.topic for r in records) == sorted(f"acme.{i}.schema.wso2.v1.event.login" for i in range(35, 40))
    text = app.scrape()
    assert text.count("idhooks_subscription_lease_expiry_timestamp_seconds{") == 5
    assert app.metric('idhooks_subscription_records_evicted_total{webhook="asgardeo"}') == 35
    assert "subscription records over subscriptions.max_records: dropped the oldest" in caplog.text


def test_unknown_hub_modes_share_one_metric_label(app):
    for i in range(100):
        assert app.hub(mode=f"mode-{i}-{BIG[:100]}", topic=TOPIC, challenge="c").status_code == 400
    assert app.hub(topic=TOPIC, challenge="c").status_code == 400
    text = app.scrape()
    assert app.metric('idhooks_subscription_verifications_total{mode="other",webhook="asgardeo"}') == 100
    assert app.metric('idhooks_subscription_verifications_total{mode="none",webhook="asgardeo"}') == 1
    assert "mode-1" not in text


@pytest.mark.parametrize("lease", ["9" * 400, "315360001", "9" * 11])
def test_an_out_of_range_lease_is_a_400_through_the_refusal_path(app, caplog, lease):
    caplog.set_level(logging.WARNING, logger="idhooks")
    result = app.hub(mode="subscribe", topic=TOPIC, challenge="c", lease_seconds=lease)
    assert result.status_code == 400 and "hub.lease_seconds" in result.json["error"]  # and no echo of "c"
    assert [r.status for r in caplog.records if r.getMessage() == "verification refused"] == [400]
    assert app.metric('idhooks_subscription_verifications_total{mode="subscribe",webhook="asgardeo"}') == 1
    assert app.store.list_subscriptions() == []


def test_metrics_stay_small_after_a_burst_of_hostile_requests(app):
    for i in range(300):
        app.hub(mode=["denied", "hub-error", "subscribe", f"junk{i}", ""][i % 5],
                topic=f"acme.{i}.schema.wso2.v1.event.{BIG[:200]}", reason=BIG[:5000], challenge="c",
                lease_seconds=str(1000 + i))
        app.client.simulate_post("/webhooks/asgardeo", body=b"{}", headers={"X-Hub-Signature": "sha256=" + "0" * 64,
                                                                           "Content-Type": "application/json"})
    assert len(app.scrape()) < 32_000  # the review saw 706 KB


def test_subscriptions_listing_is_bounded_and_escapes_control_characters(app, capsys):
    hostile = "acme.\x1b[2J\r\nFAKE OK.schema.wso2.v1.event.login"
    for i in range(100):
        app.now += 1
        app.hub(mode="denied", topic=f"acme.{i}.schema.wso2.v1.event.login", reason=BIG)
    app.hub(mode="hub-error", topic=hostile, reason="line1\nline2\x07")
    app.store.close()
    assert main(["subscriptions", "--config", str(app.config_path)]) == 0
    out = capsys.readouterr().out
    assert len(out) < 5 * (MAX_REASON_CHARS + 300)
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J\\r\\nFAKE OK" in out and "line1\\nline2\\x07" in out


def test_made_up_event_types_share_the_unknown_label(app):
    for i in range(30):
        event = sample_event()
        body = event["events"].pop(next(iter(event["events"])))
        event["events"][f"https://schemas.identity.wso2.org/events/chan{i}/event-type/made-up{i}"] = body
        assert app.post(*signed(event)).status_code == 202
    assert app.post(*signed(sample_event("login.loginFailed"))).status_code == 202
    assert app.metric('idhooks_events_total{type="unknown"}') == 30
    assert app.metric('idhooks_events_total{type="login.loginFailed"}') == 1
    assert "made-up" not in app.scrape()


@pytest.mark.parametrize("query", [
    "hub.mode=denied&hub.topic=acme.%ff%fe.schema.wso2.v1.event.x&hub.reason=%ed%a0%80",
    "hub.mode=subscribe&hub.topic=acme.%ed%a0%80.schema.wso2.v1.event.x&hub.challenge=%ed%a0%80",
    "hub.mode=%00&hub.topic=%00&hub.challenge=%0d%0a", "hub.mode=subscribe&hub.mode=denied&hub.topic=a&hub.topic=b",
])
def test_undecodable_or_repeated_parameters_get_a_deliberate_answer(app, query):
    result = app.client.simulate_get("/webhooks/asgardeo", query_string=query)
    assert result.status_code in (200, 400, 404)
    for record in app.store.list_subscriptions():
        record.topic.encode("utf-8")
        record.reason.encode("utf-8")


def test_metrics_stay_bounded_with_the_default_cap_filled_by_the_longest_topics(tmp_path):
    app = App(tmp_path)
    for i in range(300):
        app.now += 1
        topic = f"acme.{i}.schema.wso2.v1.event." + "y" * 256
        app.hub(mode="subscribe", topic=topic[:256], challenge="c", lease_seconds="864000")
    assert len(app.store.list_subscriptions()) == 200  # subscriptions.max_records
    assert len(app.scrape()) < 100_000
    app.store.close()
