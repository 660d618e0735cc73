"""The /console routes. Each page checks the session, reads its parameters with engine/api/params.py (the same
bounds as the API) and calls engine/ops. State-changing forms are POSTs carrying the session's CSRF token;
viewers get no such buttons and a 403 if they post anyway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import falcon

from engine.api import params
from engine.api.deps import ApiDeps
from engine.console import session as sessions
from engine.console.overview import overview
from engine.console.pages import render
from engine.errors import (ForbiddenError, InvalidInputError, NotFoundError, TooLargeError, TooManyRequestsError,
                           UnauthorizedError)
from engine.ops import deliveries, quarantine
from engine.ops.events import MAX_LIMIT, event_detail, list_events, timeline
from engine.ops.rules import rules_report
from engine.ops.tryrules import MAX_RULES_CHARS, try_rules
from engine import catalog

MAX_FORM_BYTES = 1_048_576 + 8 * MAX_RULES_CHARS
STATIC = Path(__file__).parent / "static"
EVENT_FILTERS = ("type", "user", "ip", "jti", "status", "since", "until")
DONE = {"retry": "retried", "drop": "dropped"}


class Page:
    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps

    def session(self, req: falcon.Request) -> sessions.Session:
        self.deps.require_on()
        found = sessions.session_of(self.deps.config.get().api, req.cookies.get(sessions.COOKIE), self.deps.clock())
        if found is None:
            raise UnauthorizedError("log in with a token from api.tokens")
        req.context.session = found
        return found

    def mask(self, session: sessions.Session) -> tuple[str, ...]:
        return () if session.caller.operator else self.deps.config.get().api.mask

    def form(self, req: falcon.Request) -> dict[str, str]:
        """The urlencoded form, read with a bound; a field given twice is refused."""
        if req.content_length is not None and req.content_length > MAX_FORM_BYTES:
            raise TooLargeError(f"the form is over {MAX_FORM_BYTES} bytes")
        raw = req.bounded_stream.read(MAX_FORM_BYTES + 1)
        if len(raw) > MAX_FORM_BYTES:
            raise TooLargeError(f"the form is over {MAX_FORM_BYTES} bytes")
        try:
            fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=20, errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise InvalidInputError("the form is not valid UTF-8 url-encoded text") from None
        if any(len(values) > 1 for values in fields.values()):
            raise InvalidInputError("a form field was given twice")
        return {name: values[0] for name, values in fields.items()}

    def checked_form(self, req: falcon.Request, session: sessions.Session) -> dict[str, str]:
        form = self.form(req)
        if not sessions.csrf_ok(session, form.get("csrf")):
            raise ForbiddenError("the form's CSRF token is missing or wrong; reload the page and try again")
        return form


def redirect(resp: falcon.Response, location: str) -> None:
    resp.status = 303
    resp.set_header("Location", location)


class Login(Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.deps.require_on()
        render(resp, "login.html", title="Log in", error=None)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.deps.require_on()
        address = req.remote_addr or ""
        try:
            self.deps.throttle.check(address, "the console login")
        except TooManyRequestsError as exc:  # the form again, saying why and for how long
            resp.set_headers(exc.headers)
            render(resp, "login.html", exc.status, title="Log in", error=str(exc).capitalize() + ".")
            return
        token = params.text(self.form(req).get("token"), "token", 4096) or ""
        cookie = sessions.login(self.deps.config.get().api, token, self.deps.clock())
        if cookie is None:
            if token.strip():  # an empty form guesses nothing
                self.deps.throttle.failed(address, "the console login")
            render(resp, "login.html", 401, title="Log in", error="That token is not one of api.tokens.")
            return
        resp.set_cookie(sessions.COOKIE, cookie, max_age=sessions.LIFETIME, path="/console",
                        secure=req.scheme == "https", http_only=True, same_site="Strict")
        redirect(resp, "/console")


class Logout(Page):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.checked_form(req, self.session(req))
        resp.unset_cookie(sessions.COOKIE, path="/console")
        redirect(resp, "/console/login")


class Overview(Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req)
        render(resp, "overview.html", title="Overview", session=session, data=overview(self.deps))


class Events(Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req)
        query = params.event_query(req.params, self.deps.clock())
        page = list_events(self.deps.store, query, params.limit(req.params.get("limit")),
                           params.text(req.params.get("cursor"), "cursor"), self.mask(session))
        filters = {name: req.params.get(name) or "" for name in EVENT_FILTERS}
        next_url = "/console/events?" + urlencode({**{k: v for k, v in filters.items() if v}, "cursor": page.next}) \
            if page.next else None
        render(resp, "events.html", title="Events", session=session, page=page, filters=filters, next_url=next_url)


class Event(Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response, jti: str) -> None:
        session = self.session(req)
        detail = event_detail(self.deps.store, params.path_id(jti, "jti"), self.mask(session))
        if detail is None:
            raise NotFoundError(f"no stored event with jti {jti[:256]!r}")
        render(resp, "event.html", title=f"Event {detail['jti']}", session=session, event=detail)


class Timeline(Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        session = self.session(req)
        user = params.path_id(username, "username")
        page = timeline(self.deps.store, user, params.moment(req.params.get("since"), "since", self.deps.clock()),
                        MAX_LIMIT, params.text(req.params.get("cursor"), "cursor"), self.mask(session))
        next_url = f"/console/users/{quote(user, safe='')}?" + urlencode({"cursor": page.next}) if page.next else None
        render(resp, "timeline.html", title="Timeline", session=session, user=user, page=page, next_url=next_url)


class Deliveries(Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req)
        status = params.choice(req.params.get("status"), "status", deliveries.STATUSES)
        destination = params.text(req.params.get("destination"), "destination", 256)
        page = deliveries.list_deliveries(self.deps.store, status, destination, 100,
                                          params.text(req.params.get("cursor"), "cursor"))
        done = {"action": params.choice(req.params.get("done"), "done", ("retried", "dropped")),
                "id": params.text(req.params.get("id"), "id", 256)}
        render(resp, "deliveries.html", title="Deliveries", session=session, page=page, status=status or "",
               destination=destination or "", done=done)


class DeadLetterAction(Page):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str, action: str) -> None:
        session = self.session(req)
        self.checked_form(req, session)
        session.caller.require_operator(f"{action} of a dead letter")
        job_id = params.path_id(id, "id")
        if action == "retry":
            deliveries.retry_dead(self.deps.store, job_id, self.deps.clock())
        elif action == "drop":
            deliveries.drop_dead(self.deps.store, job_id)
        else:
            raise NotFoundError(f"no dead-letter action {action[:40]!r} (retry or drop)")
        redirect(resp, "/console/deliveries?" + urlencode({"status": "dead", "done": DONE[action], "id": job_id}))


class Quarantine(Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req)
        entries = [quarantine.entry_json(e) for e in self.deps.store.quarantine_list()[:MAX_LIMIT]]
        render(resp, "quarantine.html", title="Quarantine", session=session, entries=entries, result=None)


class QuarantineAction(Page):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str, action: str) -> None:
        session = self.session(req)
        self.checked_form(req, session)
        session.caller.require_operator(f"{action} of a quarantined delivery")
        entry_id = params.path_id(id, "id")
        if action == "reverify":
            result = quarantine.reverify(self.deps.config.get(), self.deps.store, entry_id, self.deps.metrics)[0]
            message = f"{result.id}: {result.message}"
        elif action == "drop":
            quarantine.drop(self.deps.store, entry_id)
            message = f"{entry_id}: dropped"
        else:
            raise NotFoundError(f"no quarantine action {action[:40]!r} (reverify or drop)")
        entries = [quarantine.entry_json(e) for e in self.deps.store.quarantine_list()[:MAX_LIMIT]]
        render(resp, "quarantine.html", title="Quarantine", session=session, entries=entries, result=message)


class Rules(Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req)
        state = self.deps.readiness()
        report = rules_report(self.deps.rules.get().ruleset, state.get("loaded_at"), state.get("errors") or [])
        render(resp, "rules.html", title="Rules", session=session, report=report)


class Playground(Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req)
        self.show(resp, session, {"source": "catalog", "catalog": "login.loginFailed", "event": "", "rules": ""})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req)
        form = self.checked_form(req, session)
        fields = {"source": form.get("source", "catalog"), "catalog": form.get("catalog", ""),
                  "event": form.get("event", ""), "rules": form.get("rules", "")}
        try:
            results = try_rules(self.deps.config.get(), self.deps.rules, **self.inputs(fields))
        except InvalidInputError as exc:
            self.show(resp, session, fields, error=str(exc), status=422)
            return
        self.show(resp, session, fields, results=results)

    @staticmethod
    def inputs(fields: dict[str, str]) -> dict[str, Any]:
        rules = params.text(fields["rules"], "rules", MAX_RULES_CHARS, multiline=True)
        if fields["source"] == "event":
            text = params.text(fields["event"], "event", MAX_FORM_BYTES, multiline=True) or ""
            try:
                event = json.loads(text)
            except (ValueError, RecursionError):
                raise InvalidInputError("event: not JSON; paste a whole Security Event Token") from None
            return {"event": event, "rules": rules}
        return {"alias": params.text(fields["catalog"], "catalog", 256), "rules": rules}

    def show(self, resp: falcon.Response, session: sessions.Session, fields: dict[str, str], *,
             results: list | None = None, error: str | None = None, status: int = 200) -> None:
        render(resp, "playground.html", status, title="Playground", session=session, fields=fields,
               aliases=list(catalog.entries()), results=results, error=error)


class Static:
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name != "console.css":
            raise falcon.HTTPNotFound()
        resp.content_type = "text/css; charset=utf-8"
        resp.set_header("Cache-Control", "max-age=3600")
        resp.data = (STATIC / name).read_bytes()


class Home:
    """`/console/` (a typed or bookmarked address with the slash) is the overview at `/console`."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        redirect(resp, "/console")


def mount_console(app: falcon.App, deps: ApiDeps) -> None:
    for path, page in (("", Overview), ("/login", Login), ("/logout", Logout), ("/events", Events),
                       ("/events/{jti}", Event), ("/users/{username}", Timeline), ("/deliveries", Deliveries),
                       ("/deadletters/{id}/{action}", DeadLetterAction), ("/quarantine", Quarantine),
                       ("/quarantine/{id}/{action}", QuarantineAction), ("/rules", Rules),
                       ("/playground", Playground)):
        app.add_route("/console" + path, page(deps))
    app.add_route("/console/", Home())
    app.add_route("/console/static/{name}", Static())
