"""Lease tracking and unsubscribed webhooks (issue 12, items 19 and 20): the lease-expiry series come from the
store (so they survive a restart), `idhooks subscriptions` warns before a lease ends (`--check` exits 1), and
an event for a webhook whose every topic was unsubscribed is accepted but warned about, counted and shown."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from engine.cli import main
from tests.conftest import sample_event, signed
from tests.hostile.support import TOPIC, App

ROOT = Path(__file__).resolve().parents[2]


def test_lease_expiry_series_survive_a_restart(tmp_path):
    app = App(tmp_path, now=1_800_000_000.0)
    assert app.hub(mode="subscribe", topic=TOPIC, challenge="c", lease_seconds="864000").text == "c"
    app.store.close()
    restarted = App(tmp_path, now=1_800_000_100.0)
    series = f'idhooks_subscription_lease_expiry_timestamp_seconds{{topic="{TOPIC}",webhook="asgardeo"}}'
    assert restarted.metric(series) == 1_800_000_000.0 + 864000
    assert restarted.hub(mode="unsubscribe", topic=TOPIC, challenge="bye").text == "bye"
    assert series not in restarted.scrape()  # an unsubscribed topic has no lease
    restarted.store.close()


@pytest.mark.parametrize("lease_seconds,warn_before,warned", [
    (86400, "3d", True), (30 * 86400, "3d", False), (30 * 86400, "31d", True), (1, "1s", True)])
def test_subscriptions_warns_before_a_lease_ends_and_check_exits_1(tmp_path, capsys, lease_seconds, warn_before,
                                                                   warned):
    app = App(tmp_path, extra=f"subscriptions: {{warn_before: {warn_before}}}")
    app.post(*signed(sample_event()))  # not silent
    app.hub(mode="subscribe", topic=TOPIC, challenge="c", lease_seconds=str(lease_seconds))
    app.store.close()
    config = str(app.config_path)
    assert main(["subscriptions", "--config", config]) == 0
    out = capsys.readouterr().out
    assert (f"WARNING: the lease of webhook 'asgardeo' topic '{TOPIC}'" in out) is warned
    assert ("renew the subscription" in out) is warned
    assert main(["subscriptions", "--config", config, "--check"]) == (1 if warned else 0)


def test_the_lease_alert_says_the_subscription_must_be_renewed():
    alerts = yaml.safe_load((ROOT / "docs" / "prometheus-alerts.yml").read_text())
    rules = {r["alert"]: r for g in alerts["groups"] for r in g["rules"]}
    [lease_rule] = [r for r in rules.values() if "idhooks_subscription_lease_expiry" in r["expr"]]
    text = " ".join(lease_rule["annotations"].values())
    assert "hub normally renews" not in text and "renew the subscription" in text.lower()


def test_events_after_every_topic_was_unsubscribed_are_accepted_warned_counted_and_shown(tmp_path, caplog, capsys):
    caplog.set_level(logging.WARNING, logger="idhooks")
    app = App(tmp_path)
    app.hub(mode="subscribe", topic=TOPIC, challenge="c")
    before = sample_event()
    assert app.post(*signed(before)).json["status"] == "accepted"
    app.now += 10
    app.hub(mode="unsubscribe", topic=TOPIC, challenge="c")
    app.now += 10
    late = [sample_event() for _ in range(3)]
    for event in late:
        assert app.post(*signed(event)).json["status"] == "accepted"
    assert app.metric('idhooks_events_after_unsubscribe_total{webhook="asgardeo"}') == 3
    assert sum(r.getMessage().startswith("event for an unsubscribed webhook") for r in caplog.records) == 3
    app.store.close()
    assert main(["subscriptions", "--config", str(app.config_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert "WARNING: webhook 'asgardeo' accepted 3 event(s) after every topic was unsubscribed" in out
    assert late[0]["jti"] in out or late[2]["jti"] in out
    assert before["jti"] not in out


def test_a_resubscribed_webhook_is_not_warned_about(tmp_path):
    app = App(tmp_path)
    app.hub(mode="unsubscribe", topic=TOPIC, challenge="c")
    app.now += 1
    app.hub(mode="subscribe", topic=TOPIC, challenge="c")
    assert app.post(*signed(sample_event())).json["status"] == "accepted"
    assert app.metric('idhooks_events_after_unsubscribe_total{webhook="asgardeo"}') == 0
    app.store.close()
