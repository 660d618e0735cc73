"""`pagerduty`: trigger or resolve an incident through the Events API v2 (`POST /v2/enqueue`).

Contract (PagerDuty Events API v2): a JSON body with `routing_key`, `event_action` (trigger | resolve),
`dedup_key` and, for a trigger, `payload` {summary, source, severity, component, group, class,
custom_details}. 202 = accepted; 400 = the event is invalid (permanent); 429 and 5xx are retried, honouring
Retry-After. The routing key travels only in the body and is a secret: it never appears in an error.
`dedup_key` defaults to the job's idempotency key, so a retried trigger does not open a second incident, and a
resolve can name the incident a trigger opened.
"""

from __future__ import annotations

from typing import Any, Mapping

from actions.base import (RETRY_FIELD, ActionContext, Field, check_choice, clean_json, clean_text, host_of,
                          json_bytes)
from actions.httpresult import HttpExchangeAction, HttpRequest
from engine.errors import PermanentError
from engine.secrets import reveal

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = ("critical", "error", "warning", "info")
EVENT_ACTIONS = ("trigger", "resolve")
SUMMARY_CHARS = 1024  # the API's limit; longer summaries are cut here rather than refused there
DEDUP_KEY_CHARS = 255


class PagerDutyAction(HttpExchangeAction):
    name = "pagerduty"
    destination_type = "pagerduty"
    rule_fields = {
        "to": Field("destination", required=True, help="a destination of type pagerduty"),
        "summary": Field("text", help="the incident title (required for a trigger; cut to 1024 characters)"),
        "severity": Field("text", help="critical, error, warning or info (default warning)"),
        "source": Field("text", help="where it happened (default idhooks)"),
        "component": Field("text"), "group": Field("text"), "class": Field("text"),
        "custom_details": Field("json", help="any structure, shown with the incident"),
        "dedup_key": Field("text", help="default: the job's idempotency key"),
        "event_action": Field("text", help="trigger (default) or resolve"),
        "retry": RETRY_FIELD,
    }
    destination_fields = {
        "routing_key": Field("value", required=True, help="the integration key (use ${ENV} or routing_key_file)"),
        "url": Field("value", help=f"default {EVENTS_URL}"),
        "timeout": Field("value", help="read timeout in seconds (default 10)"),
        "connect_timeout": Field("value", help="connect timeout in seconds (default 5)"),
    }
    test_fields = {"summary": "idhooks test: {{ type }} for {{ username }}", "severity": "info"}

    def __init__(self, destination_name: str | None, destination: Mapping[str, Any] | None,
                 context: ActionContext) -> None:
        super().__init__(destination_name, destination, context)
        read = self.destination_reader()
        self.routing_key = read.secret_text("routing_key", required=True)
        self.url = read.url("url") or EVENTS_URL
        self.timeout = read.http_timeouts()
        read.done()
        self.secrets = read.secrets()

    def target(self) -> str:
        return host_of(self.url)

    @classmethod
    def check_rule_fields(cls, fields: Mapping[str, Any]) -> list[str]:
        problems = super().check_rule_fields(fields)
        problems += check_choice(fields, "severity", SEVERITIES) + check_choice(fields, "event_action", EVENT_ACTIONS)
        if fields.get("event_action", "trigger") == "trigger" and "summary" not in fields:
            problems.append("summary: a trigger needs a summary")
        return problems

    def request(self, rendered: Mapping[str, Any], idempotency_key: str) -> HttpRequest:
        return HttpRequest("POST", self.url, {"secrets": self.secrets, "timeout": self.timeout,
                                              "clock": self.context.clock,
                                              "data": json_bytes(self.body(rendered, idempotency_key)),
                                              "headers": {"Content-Type": "application/json"}})

    def body(self, rendered: Mapping[str, Any], idempotency_key: str) -> dict[str, Any]:
        """The Events API v2 body; PermanentError when a rendered value is outside the contract."""
        event_action = str(rendered.get("event_action") or "trigger").strip().lower()
        if event_action not in EVENT_ACTIONS:
            raise PermanentError(f"event_action {event_action!r} is not one of {', '.join(EVENT_ACTIONS)}")
        dedup_key = clean_text(rendered.get("dedup_key") or idempotency_key)[:DEDUP_KEY_CHARS]
        body: dict[str, Any] = {"routing_key": str(reveal(self.routing_key)), "event_action": event_action,
                                "dedup_key": dedup_key}
        if event_action == "resolve":
            return body
        severity = str(rendered.get("severity") or "warning").strip().lower()
        if severity not in SEVERITIES:
            raise PermanentError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
        summary = clean_text(rendered.get("summary") or "").strip()
        if not summary:
            raise PermanentError("summary rendered empty: a trigger needs one")
        payload: dict[str, Any] = {"summary": summary[:SUMMARY_CHARS], "severity": severity,
                                   "source": clean_text(rendered.get("source") or "idhooks")}
        for key in ("component", "group", "class"):
            if rendered.get(key):
                payload[key] = clean_text(rendered[key])
        if rendered.get("custom_details") not in (None, "", {}):
            payload["custom_details"] = clean_json(rendered["custom_details"])
        body["payload"] = payload
        return body

