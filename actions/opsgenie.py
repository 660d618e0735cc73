"""`opsgenie`: create or close an alert through the Alert API v2.

Contract (Opsgenie Alert API v2): `POST /v2/alerts` with `Authorization: GenieKey <api_key>` and a JSON
body {message (<= 130 characters), alias (<= 512), description (<= 15000), tags (<= 20 of <= 50
characters), details (a string map), priority P1..P5, source}; `close: true` sends
`POST /v2/alerts/<alias>/close?identifierType=alias`. The API answers 202 and processes the request
asynchronously. 400/401/403/404/422 are permanent; 429 and 5xx retry, honouring Retry-After.
`alias` defaults to the job's idempotency key: Opsgenie de-duplicates open alerts by alias, so a retried
create does not open a second alert, and a close can name the alert a create opened.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import quote

from actions.base import (RETRY_FIELD, ActionContext, Field, check_choice, clean_text, fold_line, host_of,
                          json_bytes)
from actions.httpresult import HttpExchangeAction, HttpRequest
from engine.errors import PermanentError
from engine.secrets import reveal

ALERTS_URL = "https://api.opsgenie.com/v2/alerts"
PRIORITIES = ("p1", "p2", "p3", "p4", "p5")
LIMITS = {"message": 130, "alias": 512, "description": 15_000, "tag": 50, "tags": 20, "details": 8_000}


class OpsgenieAction(HttpExchangeAction):
    name = "opsgenie"
    destination_type = "opsgenie"
    rule_fields = {
        "to": Field("destination", required=True, help="a destination of type opsgenie"),
        "message": Field("text", help="the alert title (cut to 130 characters); required unless close"),
        "alias": Field("text", help="de-duplication key (default: the job's idempotency key)"),
        "priority": Field("text", help="P1 to P5 (default P3)"),
        "description": Field("text"),
        "tags": Field("list", help="at most 20 tags of at most 50 characters"),
        "details": Field("json", help="a mapping of names to values"),
        "close": Field("value", help="true: close the alert with this alias instead of creating one"),
        "retry": RETRY_FIELD,
    }
    destination_fields = {
        "api_key": Field("value", required=True, help="an API integration key (use ${ENV} or api_key_file)"),
        "url": Field("value", help=f"the alerts endpoint (default {ALERTS_URL}; EU accounts use their own)"),
        "timeout": Field("value", help="read timeout in seconds (default 10)"),
        "connect_timeout": Field("value", help="connect timeout in seconds (default 5)"),
    }
    test_fields = {"message": "idhooks test: {{ type }} for {{ username }}", "priority": "P5"}

    def __init__(self, destination_name: str | None, destination: Mapping[str, Any] | None,
                 context: ActionContext) -> None:
        super().__init__(destination_name, destination, context)
        read = self.destination_reader()
        self.api_key = read.secret_text("api_key", required=True)
        self.url = str(read.url("url") or ALERTS_URL).rstrip("/")
        self.timeout = read.http_timeouts()
        read.done()
        self.secrets = read.secrets()

    def target(self) -> str:
        return host_of(self.url)

    @classmethod
    def check_rule_fields(cls, fields: Mapping[str, Any]) -> list[str]:
        problems = super().check_rule_fields(fields) + check_choice(fields, "priority", PRIORITIES)
        close = fields.get("close", False)
        if not isinstance(close, bool):
            problems.append(f"close: expected true or false, got {close!r}")
        elif not close and "message" not in fields:
            problems.append("message: creating an alert needs a message")
        if "details" in fields and not isinstance(fields["details"], Mapping):
            problems.append("details: expected a mapping of names to values")
        return problems

    def request(self, rendered: Mapping[str, Any], idempotency_key: str) -> HttpRequest:
        alias = clean_text(rendered.get("alias") or idempotency_key)
        if len(alias) > LIMITS["alias"]:
            raise PermanentError(f"alias is {len(alias)} characters; Opsgenie allows {LIMITS['alias']}")
        if rendered.get("close") is True:
            url = f"{self.url}/{quote(alias, safe='')}/close?identifierType=alias"
            body: dict[str, Any] = {"source": "idhooks", "note": "closed by idhooks"}
        else:
            url, body = self.url, self.alert(rendered, alias)
        return HttpRequest("POST", url, {
            "secrets": self.secrets, "timeout": self.timeout, "clock": self.context.clock, "data": json_bytes(body),
            "headers": {"Content-Type": "application/json", "Authorization": f"GenieKey {reveal(self.api_key)}"}})

    @staticmethod
    def alert(rendered: Mapping[str, Any], alias: str) -> dict[str, Any]:
        """The create-alert body, each value cut to the API's limits."""
        message = fold_line(clean_text(rendered.get("message") or "")).strip()
        if not message:
            raise PermanentError("message rendered empty: an alert needs one")
        priority = str(rendered.get("priority") or "P3").strip().upper()
        if priority.lower() not in PRIORITIES:
            raise PermanentError(f"priority {priority!r} is not one of P1, P2, P3, P4, P5")
        body: dict[str, Any] = {"message": message[:LIMITS["message"]], "alias": alias, "priority": priority,
                                "source": "idhooks"}
        if rendered.get("description"):
            body["description"] = clean_text(rendered["description"])[:LIMITS["description"]]
        tags = [fold_line(clean_text(t)).strip()[:LIMITS["tag"]] for t in rendered.get("tags") or []]
        if any(tags):
            body["tags"] = [t for t in tags if t][:LIMITS["tags"]]
        details = rendered.get("details")
        if isinstance(details, Mapping) and details:
            body["details"] = _details(details)
        return body


def _details(details: Mapping[str, Any]) -> dict[str, str]:
    """Opsgenie details are a string map of at most 8000 characters in all: values as text, cut to fit."""
    out: dict[str, str] = {}
    room = LIMITS["details"]
    for key, value in details.items():
        name, text = clean_text(key)[:100], clean_text(value if isinstance(value, str) else json_bytes(value).decode())
        text = text[:max(room - len(name), 0)]
        if room - len(name) <= 0:
            break
        out[name] = text
        room -= len(name) + len(text)
    return out
