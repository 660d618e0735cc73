"""Prometheus metrics, one registry per running app (so tests can build several apps side by side).

Every label value comes from a closed set (config names, known outcomes and modes, 'other'), never from a
caller, so no request can add series; the lease-expiry series come from the store's bounded subscription
records (engine/store/subscriptions.py), so they survive a restart.

Names follow Prometheus conventions: counters end in `_total`, durations in `_seconds`, timestamps are
`_timestamp_seconds`. Store-derived gauges (queue depth, quarantine size, last accepted event) are read
from the store at scrape time by `StoreCollector`, so every process of a deployment reports the same truth.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.store.base import SubscriptionRecord
from engine.store.subscriptions import leases

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class Metrics:
    """Every metric idhooks exposes. "Received" is inbound (an event POST from the hub); "delivery" and
    "action" are outbound (a job sent to a destination)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._store_collectors: list[StoreCollector] = []
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        outcomes = ("(accepted, duplicate, conflict, stale, bad_signature, bad_payload, too_large, "
                    "unsupported_media, store_error)")
        self.received = Counter("idhooks_events_received_total",
                                f"Event POSTs received from the hub, by webhook and outcome {outcomes}.",
                                ["webhook", "outcome"], registry=r)
        self.received_alias = Counter("idhooks_deliveries_received_total",
                                      "Deprecated alias of idhooks_events_received_total (same values), kept for "
                                      "one release: 'delivery' now means only an outbound job.",
                                      ["webhook", "outcome"], registry=r)
        self.events = Counter("idhooks_events_total", "Accepted events by event type alias (or 'unknown').",
                              ["type"], registry=r)
        self.event_failures = Counter("idhooks_event_failures_total",
                                      "Events whose evaluation or recording failed, by outcome (retry: tried "
                                      "again later; failed: given up, see `idhooks events list --status "
                                      "failed`).", ["outcome"], registry=r)
        self.rule_matches = Counter("idhooks_rule_matches_total", "Rule matches by rule id.", ["rule"], registry=r)
        self.action_attempts = Counter("idhooks_action_attempts_total", "Delivery attempts by destination.",
                                       ["destination"], registry=r)
        self.action_successes = Counter("idhooks_action_successes_total", "Successful deliveries by destination.",
                                        ["destination"], registry=r)
        self.action_failures = Counter("idhooks_action_failures_total",
                                       "Failed delivery attempts by destination and class (retryable, permanent).",
                                       ["destination", "class"], registry=r)
        self.dead_letters = Counter("idhooks_dead_letters_total", "Jobs moved to the dead-letter list.",
                                    ["destination"], registry=r)
        self.delivery_latency = Histogram("idhooks_delivery_latency_seconds",
                                          "From the event's receipt to its action's successful delivery.",
                                          ["destination"], buckets=LATENCY_BUCKETS, registry=r)
        self.request_latency = Histogram("idhooks_request_duration_seconds", "Intake request handling time.",
                                         ["webhook"], registry=r)
        self.reloads = Counter("idhooks_rule_reloads_total", "Rule/config reloads by result (success, failure).",
                               ["result"], registry=r)
        self.last_reload = Gauge("idhooks_rules_last_good_load_timestamp_seconds",
                                 "When the running rule set was loaded.", registry=r, multiprocess_mode="max")
        self.rules_loaded = Gauge("idhooks_rules_loaded", "Rules in the running rule set.", registry=r,
                                  multiprocess_mode="liveall")
        self.subscription_evicted = Counter("idhooks_subscription_records_evicted_total",
                                            "Subscription records dropped to stay within "
                                            "subscriptions.max_records.", ["webhook"], registry=r)
        self.after_unsubscribe = Counter("idhooks_events_after_unsubscribe_total",
                                         "Events accepted for a webhook whose every topic was unsubscribed.",
                                         ["webhook"], registry=r)
        self.iat_seconds = Counter("idhooks_iat_in_seconds_total",
                                   "Events whose iat looked like epoch seconds instead of milliseconds.",
                                   ["webhook"], registry=r)
        self.quarantine_evicted = Counter("idhooks_quarantine_evicted_total",
                                          "Quarantined deliveries dropped because the quarantine was full.",
                                          registry=r)
        self.stateful_capped = Counter("idhooks_stateful_groups_capped_total",
                                       "Matching events not counted because their threshold rule already holds "
                                       "threshold.max_groups groups.", ["rule"], registry=r)
        self.actions_shadowed = Counter("idhooks_actions_shadowed_total",
                                        "Actions a `mode: shadow` rule rendered and recorded as would-send instead "
                                        "of sending, by rule id.", ["rule"], registry=r)
        self.state_capped = Counter("idhooks_state_capped_total",
                                    "Values or groups a sequence, new_value or absence rule did not keep because "
                                    "it reached its bound (max_groups, max_values, max_timers), by rule and bound.",
                                    ["rule", "bound"], registry=r)
        self.verifications = Counter("idhooks_subscription_verifications_total",
                                     "Hub verification requests by webhook and mode.", ["webhook", "mode"], registry=r)

    def child(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)`, looked up once per label set: labels() takes a lock and checks each value
        on every call, and intake asks for four on every event (issue 14). The label values come from closed
        sets (webhooks, outcomes, destinations, rule ids of the configuration), and a child once made stays in
        the metric anyway, so this holds no more entries than the metrics themselves."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def count_received(self, webhook: str, outcome: str) -> None:
        """One event POST from the hub, under the new name and its deprecated alias."""
        self.child(self.received, webhook, outcome).inc()
        self.child(self.received_alias, webhook, outcome).inc()

    def watch_store(self, stats: Callable[[], object], last_accepted: Callable[[], dict[str, float]],
                    records: Callable[[], list[SubscriptionRecord]] = list) -> None:
        """Expose store-derived gauges, read at scrape time."""
        collector = StoreCollector(stats, last_accepted, records)
        self.registry.register(collector)
        self._store_collectors.append(collector)

    def render(self) -> bytes:
        """This process's metrics; under `server.processes` above 1 (the supervisor sets
        PROMETHEUS_MULTIPROC_DIR), the sum over every process of the deployment, so any process can answer."""
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not folder:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=folder)
        for collector in self._store_collectors:
            combined.register(collector)
        return generate_latest(combined)


class StoreCollector(Collector):
    """Queue depth by state, quarantine size, last accepted event per webhook and lease expiry per topic,
    read from the store."""

    def __init__(self, stats: Callable[[], object], last_accepted: Callable[[], dict[str, float]],
                 records: Callable[[], list[SubscriptionRecord]] = list) -> None:
        self._stats, self._last_accepted, self._records = stats, last_accepted, records

    def describe(self) -> Iterable:
        return []

    def collect(self) -> Iterable:
        try:
            stats = self._stats()
            last = self._last_accepted()
            records = self._records()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the store is briefly down
            return
        depth = GaugeMetricFamily("idhooks_queue_depth", "Delivery jobs by state.", labels=["state"])
        for state in ("pending", "failed", "dead"):
            depth.add_metric([state], stats.jobs.get(state, 0))
        yield depth
        yield GaugeMetricFamily("idhooks_dead_letters", "Jobs in the dead-letter list now.",
                                value=stats.jobs.get("dead", 0))
        pending = GaugeMetricFamily("idhooks_events_pending", "Stored events not yet evaluated.",
                                    value=stats.events.get("pending", 0))
        yield pending
        yield GaugeMetricFamily("idhooks_events_failed", "Stored events given up after failed evaluations or "
                                "recordings (idhooks events list --status failed).",
                                value=stats.events.get("failed", 0))
        yield GaugeMetricFamily("idhooks_quarantine_entries", "Refused deliveries kept in quarantine.",
                                value=stats.quarantine_entries)
        yield GaugeMetricFamily("idhooks_quarantine_bytes", "Bytes kept in quarantine.", value=stats.quarantine_bytes)
        family = GaugeMetricFamily("idhooks_last_accepted_event_timestamp_seconds",
                                   "When the newest stored event of a webhook was received.", labels=["webhook"])
        for webhook, at in sorted(last.items()):
            family.add_metric([webhook], at)
        yield family
        expiry = GaugeMetricFamily("idhooks_subscription_lease_expiry_timestamp_seconds",
                                   "When the lease of a subscribed topic ends (the subscription must be renewed "
                                   "before then).", labels=["webhook", "topic"])
        for lease in leases(records):
            expiry.add_metric([lease.webhook, lease.topic], lease.expires_at)
        yield expiry
