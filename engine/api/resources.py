"""The /api/v1 resources. Each one checks the caller, reads its parameters with engine/api/params.py and
calls the function in engine/ops that the CLI calls too; it adds nothing of its own but the JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import falcon

from engine.api import params
from engine.api.auth import Caller, bearer_caller
from engine.api.deps import ApiDeps
from engine.errors import InvalidInputError, NotFoundError, TooLargeError, UnauthorizedError
from engine.ops import cursor, deliveries, quarantine
from engine.ops.events import MAX_LIMIT, event_detail, list_events, timeline
from engine.ops.rules import rules_report
from engine.ops.subscriptions import subscription_report
from engine.ops.tryrules import MAX_RULES_CHARS, try_rules

MAX_BODY_BYTES = 2 * 1_048_576 + 8 * MAX_RULES_CHARS
"""The largest request body the API reads: an event of the default server.max_body_bytes and rule text, with
room for JSON escaping."""


def send(resp: falcon.Response, data: Any, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(data, default=str)


class Resource:
    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps

    def caller(self, req: falcon.Request) -> Caller:
        """The token's caller; a wrong token counts against the client's address (engine/throttle.py)."""
        self.deps.require_on()
        address, header = req.remote_addr or "", req.get_header("Authorization")
        self.deps.throttle.check(address, "the API")
        try:
            return bearer_caller(self.deps.config.get().api, header)
        except UnauthorizedError:
            if header:  # a token was tried (no header at all guesses nothing)
                self.deps.throttle.failed(address, "the API")
            raise

    def mask_for(self, caller: Caller) -> tuple[str, ...]:
        return () if caller.operator else self.deps.config.get().api.mask


class Events(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = self.caller(req)
        query = params.event_query(req.params, self.deps.clock())
        page = list_events(self.deps.store, query, params.limit(req.params.get("limit")),
                           params.text(req.params.get("cursor"), "cursor"), self.mask_for(caller))
        send(resp, page.to_json())


class Event(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, jti: str) -> None:
        caller = self.caller(req)
        detail = event_detail(self.deps.store, params.path_id(jti, "jti"), self.mask_for(caller))
        if detail is None:
            raise NotFoundError(f"no stored event with jti {jti[:256]!r}")
        send(resp, detail)


class Timeline(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        caller = self.caller(req)
        page = timeline(self.deps.store, params.path_id(username, "username"),
                        params.moment(req.params.get("since"), "since", self.deps.clock()),
                        params.limit(req.params.get("limit"), MAX_LIMIT),
                        params.text(req.params.get("cursor"), "cursor"), self.mask_for(caller))
        send(resp, page.to_json())


class Deliveries(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.caller(req)
        page = deliveries.list_deliveries(
            self.deps.store, params.choice(req.params.get("status"), "status", deliveries.STATUSES),
            params.text(req.params.get("destination"), "destination", 256),
            params.limit(req.params.get("limit"), 100), params.text(req.params.get("cursor"), "cursor"))
        send(resp, page.to_json())


class DeadLetterRetry(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.caller(req).require_operator("retrying a dead letter")
        job_id = params.path_id(id, "id")
        deliveries.retry_dead(self.deps.store, job_id, self.deps.clock())
        send(resp, {"id": job_id, "status": "pending"})


class DeadLetterDrop(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.caller(req).require_operator("dropping a dead letter")
        job_id = params.path_id(id, "id")
        deliveries.drop_dead(self.deps.store, job_id)
        send(resp, {"id": job_id, "status": "dropped"})


class Quarantine(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.caller(req)
        size = params.limit(req.params.get("limit"), 100)
        position = cursor.decode(params.text(req.params.get("cursor"), "cursor"))
        entries = [e for e in self.deps.store.quarantine_list()
                   if position is None or (e.received_at, e.id) > position]
        page = entries[:size]
        more = len(entries) > size
        send(resp, {"items": [quarantine.entry_json(e) for e in page],
                    "next": cursor.encode(page[-1].received_at, page[-1].id) if more else None})


class QuarantineReverify(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.caller(req).require_operator("re-verifying a quarantined delivery")
        results = quarantine.reverify(self.deps.config.get(), self.deps.store, params.path_id(id, "id"),
                                      self.deps.metrics)
        send(resp, results[0].to_json())


class QuarantineDrop(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.caller(req).require_operator("dropping a quarantined delivery")
        entry_id = params.path_id(id, "id")
        quarantine.drop(self.deps.store, entry_id)
        send(resp, {"id": entry_id, "status": "dropped"})


class Subscriptions(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.caller(req)
        report = subscription_report(self.deps.config.get(), self.deps.store, self.deps.clock())
        send(resp, {"items": report["subscriptions"], "next": None,
                    **{k: report[k] for k in ("webhooks", "silent", "after_unsubscribe", "warnings")}})


class Rules(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.caller(req)
        state = self.deps.readiness()
        send(resp, rules_report(self.deps.rules.get().ruleset, state.get("loaded_at"), state.get("errors") or []))


class RulesTest(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.caller(req)
        body = json_body(req)
        unknown = sorted(set(body) - {"event", "catalog", "rules", "webhook"})
        if unknown:
            raise InvalidInputError(f"unknown field {unknown[0][:100]!r}; expected event or catalog, rules, webhook")
        rules = body.get("rules")
        if rules is not None and not isinstance(rules, str):
            raise InvalidInputError("rules: expected the text of a rule file (YAML), as a string")
        send(resp, try_rules(self.deps.config.get(), self.deps.rules, event=body.get("event"),
                             alias=params.text(body.get("catalog"), "catalog", 256),
                             rules=params.text(rules, "rules", MAX_RULES_CHARS, multiline=True) if rules else rules,
                             webhook=params.text(body.get("webhook"), "webhook", 256)))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def json_body(req: falcon.Request) -> dict[str, Any]:
    """The request body as a JSON object, read with a bound."""
    if req.content_length is not None and req.content_length > MAX_BODY_BYTES:
        raise TooLargeError(f"the body is over {MAX_BODY_BYTES} bytes")
    raw = req.bounded_stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise TooLargeError(f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        raise InvalidInputError("body: expected a JSON object (UTF-8)") from None
    if not isinstance(body, dict):
        raise InvalidInputError("body: expected a JSON object")
    return body


ROUTES: list[tuple[str, type[Resource]]] = [
    ("/events", Events), ("/events/{jti}", Event), ("/users/{username}/timeline", Timeline),
    ("/deliveries", Deliveries), ("/deadletters/{id}/retry", DeadLetterRetry),
    ("/deadletters/{id}/drop", DeadLetterDrop), ("/quarantine", Quarantine),
    ("/quarantine/{id}/reverify", QuarantineReverify), ("/quarantine/{id}/drop", QuarantineDrop),
    ("/subscriptions", Subscriptions), ("/rules", Rules), ("/rules/test", RulesTest),
]
"""Every API route below /api/v1 (the OpenAPI document is checked against this list by a test)."""
