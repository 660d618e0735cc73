"""Mounting the API (and the console) on a Falcon app: on the main app, or on the separate app of
`api.listen`. Errors below /api/v1 answer `{"error": ..., "detail": ...}` with their status; the console
renders its own error page; every other path keeps the intake's error format."""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon

from engine.api.deps import API_PREFIX, CONSOLE_PREFIX, OFF_MESSAGE, ApiDeps
from engine.api.openapi import document
from engine.api.resources import ROUTES, send
from engine.console.app import mount_console
from engine.console.pages import error_page
from engine.errors import RequestError

log = logging.getLogger("idhooks.api")

_TITLES = {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found", 405: "method not allowed",
           413: "too large", 415: "unsupported media type", 422: "invalid input", 429: "too many requests",
           503: "unavailable"}


def api_error(status: int, detail: str) -> dict[str, str]:
    return {"error": _TITLES.get(status, "error"), "detail": detail}


class OpenApi:
    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.deps.require_on()
        send(resp, document())


class NotFound:
    """Below /api/v1, a path no route takes: a JSON 404 (not the webhook sink's)."""

    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps

    def __call__(self, req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
        self.deps.require_on()
        send(resp, api_error(404, f"no API operation at {req.path[:200]}"), 404)


def _handle_request_error(req: falcon.Request, resp: falcon.Response, ex: RequestError, params: dict) -> None:
    resp.set_headers(ex.headers)
    if req.path.startswith(API_PREFIX):
        send(resp, api_error(ex.status, str(ex)), ex.status)
    elif req.path.startswith(CONSOLE_PREFIX):
        error_page(req, resp, ex)
        return
    else:  # the intake's format, unchanged
        send(resp, {"error": str(ex)}, ex.status)
    if ex.status == 401:
        resp.set_header("WWW-Authenticate", 'Bearer realm="idhooks"')


def _serialize_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError) -> None:
    """Falcon's own errors (405, a malformed query string): the API's format below /api/v1."""
    resp.content_type = falcon.MEDIA_JSON
    if req.path.startswith(API_PREFIX):
        resp.text = json.dumps(api_error(ex.status_code, ex.description or ex.title))
    else:
        resp.text = json.dumps(ex.to_dict())


def mount(app: falcon.App, deps: ApiDeps) -> None:
    """Add /api/v1 and /console to `app`. With no token configured they answer 404 and one log line says
    how to turn them on."""
    if not deps.config.get().api.tokens:
        log.info(OFF_MESSAGE)
    app.add_error_handler(RequestError, _handle_request_error)
    app.set_error_serializer(_serialize_http_error)
    for path, resource in ROUTES:
        app.add_route(API_PREFIX + path, resource(deps))
    app.add_route(API_PREFIX + "/openapi.json", OpenApi(deps))
    app.add_sink(NotFound(deps), prefix=API_PREFIX + "/")
    mount_console(app, deps)


def create_api_app(deps: ApiDeps) -> falcon.App:
    """The app of `api.listen`: the API and console alone, on their own address."""
    app = falcon.App(media_type=falcon.MEDIA_JSON)
    app.req_options.strip_url_path_trailing_slash = False
    mount(app, deps)
    return app
