"""Rendering console pages: one Jinja2 environment with autoescaping on for every template, so every value
that came from an event (a username like `<img src=x onerror=...>`) is shown as text."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import falcon
import jinja2

from engine.errors import RequestError

TEMPLATES = Path(__file__).parent / "templates"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined)
_env.filters["when"] = _when
_env.filters["pretty"] = _pretty


def render(resp: falcon.Response, template: str, http_status: int = 200, /, **context: Any) -> None:
    resp.status = http_status
    resp.content_type = falcon.MEDIA_HTML
    for name, value in SECURITY_HEADERS.items():
        resp.set_header(name, value)
    context.setdefault("session", None)
    context.setdefault("title", "")
    resp.text = _env.get_template(template).render(**context)


def error_page(req: falcon.Request, resp: falcon.Response, ex: RequestError) -> None:
    """A refusal inside the console: a GET without a session goes to the login page, anything else shows the
    message with its status."""
    if ex.status == 401 and req.method == "GET":
        resp.status = 303
        resp.set_header("Location", "/console/login")
        return
    render(resp, "error.html", ex.status, title=f"{ex.status}", message=str(ex),
           session=req.context.get("session"))
