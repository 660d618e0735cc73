"""The OpenAPI 3.1 document of /api/v1, served at /api/v1/openapi.json. tests/test_api_openapi.py checks that
it lists exactly the routes of engine/api/resources.py and that answers match its schemas; schemathesis
runs it against a live server (a slow test)."""

from __future__ import annotations

from typing import Any

from engine import __version__
from engine.ops.deliveries import STATUSES as JOB_STATUSES
from engine.ops.events import EVENT_STATUSES, MAX_LIMIT

NUMBER = {"type": "number"}
STRING = {"type": "string"}
TIME = {"type": "number", "description": "epoch seconds"}
MAYBE_TIME = {"type": ["number", "null"], "description": "epoch seconds"}
MAYBE_STRING = {"type": ["string", "null"]}
NEXT = {"type": ["string", "null"], "description": "pass as `cursor` for the next page; null on the last page"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or list(properties)}


def _page(item: str, **extra: Any) -> dict[str, Any]:
    return _object({"items": {"type": "array", "items": _ref(item)}, "next": NEXT, **extra})


_SUMMARY = {"jti": STRING, "webhook": STRING, "received_at": TIME, "occurred_at": TIME,
            "types": {"type": "array", "items": STRING}, "status": {"enum": list(EVENT_STATUSES)},
            "username": MAYBE_STRING, "user_id": MAYBE_STRING, "ip": MAYBE_STRING,
            "matched": {"type": "array", "items": STRING, "description": "ids of the rules that matched"}}

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": STRING, "detail": STRING}),
    "EventSummary": _object(_SUMMARY),
    "EventPage": _page("EventSummary"),
    "EventDetail": _object({
        **_SUMMARY, "iat_ms": NUMBER, "uris": {"type": "array", "items": STRING}, "processed_at": MAYBE_TIME,
        "envelope": {"type": "object", "description": "the SET's claims other than events (iss, jti, iat, ...)"},
        "body": {"type": "object", "description": "event URI -> event body (masked fields masked for viewers)"},
        "decisions": {"type": ["array", "null"], "items": {"type": "object"},
                      "description": "one record per candidate rule: matched with its rendered actions, or the "
                                     "first failed condition and the value found; null until processed. "
                                     "A rule that fired later from the tick (an absence timer, a digest period) "
                                     "adds a matched record with fired_by (timer | digest), fired_at and "
                                     "appended_at (at most 20 per event, then one warning record)"},
        "jobs": {"type": "array", "items": _ref("Job")}}),
    "Job": _object({"id": STRING, "key": STRING, "status": {"enum": ["pending", "failed", "dead", "done"]},
                    "type": STRING, "rule": MAYBE_STRING, "jti": MAYBE_STRING, "destination": STRING,
                    "attempts": {"type": "integer"}, "created_at": TIME, "due_at": TIME, "last_error": STRING,
                    "last_response": STRING}),
    "JobPage": _page("Job"),
    "Done": _object({"id": STRING, "status": {"enum": ["pending", "dropped"]}}),
    "QuarantineEntry": _object({"id": STRING, "webhook": STRING, "received_at": TIME, "reason": STRING,
                                "bytes": {"type": "integer"}}),
    "QuarantinePage": _page("QuarantineEntry"),
    "Reverified": _object({"id": STRING, "ingested": {"type": "boolean"}, "message": STRING, "jti": MAYBE_STRING}),
    "Subscription": _object({"webhook": STRING, "topic": STRING, "mode": STRING, "at": TIME,
                             "lease_expires_at": MAYBE_TIME, "reason": STRING}),
    "SubscriptionPage": _page("Subscription", webhooks={"type": "array", "items": _object({
        "webhook": STRING, "path": STRING, "last_event_at": MAYBE_TIME, "lease_expires_at": MAYBE_TIME,
        "silent": {"type": "boolean"}})}, silent={"type": "array", "items": {"type": "object"}},
        after_unsubscribe={"type": "array", "items": {"type": "object"},
                           "description": "events accepted after every topic of a webhook was unsubscribed"},
        warnings={"type": "array", "items": STRING}),
    "Rule": _object({"id": STRING, "source": {"type": "string", "description": "file:line"},
                     "kind": {"enum": ["match", "threshold", "suppress", "digest"]}, "enabled": {"type": "boolean"},
                     "mode": {"enum": ["live", "shadow"]},
                     "description": STRING, "events": {"type": "array", "items": STRING},
                     "actions": {"type": "array", "items": _object({"type": STRING, "destination": MAYBE_STRING})}}),
    "RulePage": _page("Rule", loaded_at=MAYBE_TIME, last_reload_error=MAYBE_STRING),
    "RuleTestRequest": {"type": "object", "additionalProperties": False,
                        "oneOf": [{"required": ["event"]}, {"required": ["catalog"]}], "properties": {
        "event": {"type": "object", "description": "a Security Event Token (give this or catalog)"},
        "catalog": {"type": "string", "description": "a catalog alias such as login.loginFailed"},
        "rules": {"type": "string", "description": "a rule file's YAML; the loaded rules when absent"},
        "webhook": {"type": "string", "description": "evaluate as received on this webhook"}}},
    "RuleTestResult": {"type": "array", "items": _object({
        "file": STRING, "jti": STRING, "uri": STRING, "type": STRING,
        "decisions": {"type": "array", "items": {"type": "object"}}})},
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _ok(schema: str) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": _ref(schema)}}}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}


def _operation(summary: str, schema: str, parameters: list[dict[str, Any]] = (), *, operator: bool = False,
               body: str | None = None, not_found: str = "the API is off (no api.tokens)") -> dict[str, Any]:
    responses = {"200": _ok(schema), "401": _error("no or wrong bearer token"), "404": _error(not_found),
                 "422": _error("a parameter or field is not acceptable"), "503": _error("the store is unavailable"),
                 "429": {**_error("too many wrong tokens from this address: refused until the window ends"),
                         "headers": {"Retry-After": {"description": "seconds until the address may try again",
                                                     "schema": {"type": "integer", "minimum": 1}}}}}
    if operator:
        responses["403"] = _error("the token is a viewer's")
    operation: dict[str, Any] = {"summary": summary, "parameters": list(parameters), "responses": responses}
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
        responses["413"] = _error("the body is too large")
    return operation


LIMIT = _query("limit", f"page size (default 50; above {MAX_LIMIT} means {MAX_LIMIT})",
               {"type": "integer", "minimum": 1})
CURSOR = _query("cursor", "the `next` of the previous page")
SINCE = _query("since", "a duration back from now (30m, 7d), an ISO 8601 time or epoch seconds")


def _paths() -> dict[str, Any]:
    job_id = _path("id", "a job id as `idhooks deliveries` prints it")
    entry_id = _path("id", "a quarantine entry id as `idhooks quarantine list` prints it")
    return {
        "/events": {"get": _operation("Stored events, newest first, with the rules they matched", "EventPage", [
            _query("type", "catalog alias (login.loginFailed), alias prefix (login.*) or event URI"),
            _query("user", "username (case-insensitive) or user id"), _query("ip", "initiatorIpAddress"),
            _query("jti", "one event's jti"), _query("status", "event status", {"enum": list(EVENT_STATUSES)}),
            SINCE, _query("until", "like since"), LIMIT, CURSOR])},
        "/events/{jti}": {"get": _operation("One event: envelope, body, decision trace, jobs", "EventDetail",
                                            [_path("jti", "the event's jti")], not_found="no such event")},
        "/users/{username}/timeline": {"get": _operation(
            "Every stored event about one user, oldest first", "EventPage",
            [_path("username", "username or user id"), SINCE, LIMIT, CURSOR])},
        "/deliveries": {"get": _operation("Outbound jobs with attempts and last error", "JobPage", [
            _query("status", "pending, failed (pending with a failed attempt) or dead", {"enum": list(JOB_STATUSES)}),
            _query("destination", "one destination's jobs"), LIMIT, CURSOR])},
        "/deadletters/{id}/retry": {"post": _operation("Queue a dead letter again (idhooks deadletters retry)",
                                                       "Done", [job_id], operator=True, not_found="no such dead letter")},
        "/deadletters/{id}/drop": {"post": _operation("Delete a dead letter (idhooks deadletters drop)", "Done",
                                                      [job_id], operator=True, not_found="no such dead letter")},
        "/quarantine": {"get": _operation("Deliveries refused for their signature, oldest first", "QuarantinePage",
                                          [LIMIT, CURSOR])},
        "/quarantine/{id}/reverify": {"post": _operation(
            "Re-verify with the current secrets; ingest if it verifies", "Reverified", [entry_id], operator=True,
            not_found="no such entry")},
        "/quarantine/{id}/drop": {"post": _operation("Delete a quarantined delivery", "Done", [entry_id],
                                                     operator=True, not_found="no such entry")},
        "/subscriptions": {"get": _operation("Hub verifications, notices, lease expiry, last event per webhook",
                                             "SubscriptionPage")},
        "/rules": {"get": _operation("Loaded rules and the last reload error", "RulePage")},
        "/rules/test": {"post": _operation("Evaluate an event against rules: what `idhooks test --json` prints; "
                                           "nothing is stored or sent", "RuleTestResult", body="RuleTestRequest")},
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (paths relative to the server URL /api/v1)."""
    return {"openapi": "3.1.0",
            "info": {"title": "idhooks API", "version": __version__,
                     "description": "Events, decisions, deliveries, quarantine and rules of one idhooks deployment. "
                                    "Authenticate with `Authorization: Bearer <token>` (api.tokens)."},
            "servers": [{"url": "/api/v1"}],
            "security": [{"bearer": []}],
            "paths": _paths(),
            "components": {"schemas": SCHEMAS,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
