"""`splunk_hec`: send an event to Splunk's HTTP Event Collector (`POST /services/collector/event`).

Contract (Splunk HEC): header `Authorization: Splunk <token>`, a JSON body {event, fields, index,
sourcetype, source, time}; HEC answers 200 `{"text": "Success", "code": 0}`. Errors carry a HEC code:
400 (6 invalid data format, 12 event field required, ...), 401 (2 token required), 403 (4 invalid token,
1 token disabled) and 404 are permanent; 429, 503 (9 server busy) and other 5xx retry, honouring
Retry-After. `event` defaults to the event with what idhooks derived from it and the rule that matched.
`fields` are indexed fields: HEC takes only a flat map of strings (or lists of strings), so values are
converted to text and nested structures are refused at load.
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping
from urllib.parse import urlsplit

from actions.base import EVENT_RECORD, RETRY_FIELD, ActionContext, Field, clean_json, clean_text, json_bytes
from actions.httpresult import HttpExchangeAction, HttpRequest
from engine.secrets import reveal

EVENT_PATH = "/services/collector/event"


class SplunkHecAction(HttpExchangeAction):
    name = "splunk_hec"
    destination_type = "splunk_hec"
    rule_fields = {
        "to": Field("destination", required=True, help="a destination of type splunk_hec"),
        "event": Field("json", default=EVENT_RECORD,
                       help="what to index (default: the event, its derived values and the rule that matched)"),
        "fields": Field("json", help="indexed fields: a flat mapping of names to text"),
        "retry": RETRY_FIELD,
    }
    destination_fields = {
        "url": Field("value", required=True, help=f"the HEC base URL (e.g. https://splunk:8088); {EVENT_PATH} is added"),
        "token": Field("value", required=True, help="the HEC token (use ${ENV} or token_file)"),
        "index": Field("value"), "sourcetype": Field("value", help="default _json"),
        "source": Field("value", help="default idhooks"),
        "ca_file": Field("value", help="CA bundle for a private CA"),
        "timeout": Field("value", help="read timeout in seconds (default 10)"),
        "connect_timeout": Field("value", help="connect timeout in seconds (default 5)"),
    }
    test_fields = {"fields": {"idhooks_test": "true"}}

    def __init__(self, destination_name: str | None, destination: Mapping[str, Any] | None,
                 context: ActionContext) -> None:
        super().__init__(destination_name, destination, context)
        read = self.destination_reader()
        base = str(read.url("url", required=True) or "").rstrip("/")
        self.url = base if urlsplit(base).path.endswith(EVENT_PATH) else base + EVENT_PATH
        self.token = read.secret_text("token", required=True)
        self.meta = {"index": read.text("index"), "sourcetype": read.text("sourcetype", "_json"),
                     "source": read.text("source", "idhooks")}
        self.verify: bool | str = read.text("ca_file") or True
        self.timeout = read.http_timeouts()
        read.done()
        self.secrets = read.secrets()

    @classmethod
    def check_rule_fields(cls, fields: Mapping[str, Any]) -> list[str]:
        problems = super().check_rule_fields(fields)
        indexed = fields.get("fields")
        if indexed is not None and (not isinstance(indexed, Mapping) or any(
                isinstance(v, Mapping) or isinstance(v, list) and any(isinstance(i, (Mapping, list)) for i in v)
                for v in indexed.values())):
            problems.append("fields: expected a flat mapping of names to text (or lists of text)")
        return problems

    def request(self, rendered: Mapping[str, Any], idempotency_key: str) -> HttpRequest:
        return HttpRequest("POST", self.url, {
            "secrets": self.secrets, "timeout": self.timeout, "clock": self.context.clock,
            "data": json_bytes(self.body(rendered)), "verify": self.verify,
            "headers": {"Content-Type": "application/json", "Authorization": f"Splunk {reveal(self.token)}",
                        "X-Splunk-Request-Channel": _channel(idempotency_key)}})

    def body(self, rendered: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {k: v for k, v in self.meta.items() if v}
        event = rendered.get("event")
        body["event"] = clean_json(event) if event not in (None, "") else {}
        indexed = rendered.get("fields")
        if isinstance(indexed, Mapping) and indexed:
            body["fields"] = {clean_text(k): [clean_text(i) for i in v] if isinstance(v, list) else clean_text(v)
                              for k, v in indexed.items()}
        return body


def _channel(idempotency_key: str) -> str:
    """A stable GUID per job for HEC's request channel (required when indexer acknowledgement is on)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "idhooks:" + idempotency_key))
