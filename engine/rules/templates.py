"""Jinja2 templates for action fields, compiled at load in a sandbox.

Two different "missing" cases, on purpose:
- a name that is not in the template context (`{{ evnt.user }}`) is a typo: a load error;
- a field this particular event lacks (`{{ event.user.id }}` on a role event) renders '' or the
  template's `default(...)`: every field is optional on the wire, so it must never fail an action.
Event values are passed as data and never parsed as templates, so `{{` inside an event is just text.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from jinja2 import ChainableUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from engine.config import suggest
from engine.rules.context import TEMPLATE_NAMES

Render = Callable[[dict[str, Any]], str]


def _tojson(value: Any, indent: int | None = None) -> str:
    """Plain JSON (Jinja's own tojson escapes for HTML, which is wrong in Slack text and HTTP bodies)."""
    if isinstance(value, ChainableUndefined):
        value = None
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


_ENV = SandboxedEnvironment(undefined=ChainableUndefined, autoescape=False, keep_trailing_newline=True)
_ENV.filters["tojson"] = _tojson


def _constant(text: str) -> Render:
    return lambda context: text


def compile_template(source: str) -> Render:
    """A render function for `source`; ValueError naming the problem (syntax, unknown name) otherwise."""
    if "{{" not in source and "{%" not in source and "{#" not in source:
        return _constant(source)
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"invalid template (line {exc.lineno} of the template): {exc.message}") from None
    unknown = sorted(meta.find_undeclared_variables(tree) - set(TEMPLATE_NAMES))
    if unknown:
        name = unknown[0]
        raise ValueError(f"unknown template name '{name}'{suggest(name, TEMPLATE_NAMES)}; "
                         f"available: {', '.join(TEMPLATE_NAMES)}")
    template = _ENV.from_string(tree)
    return template.render
