"""Jinja2 templates for action fields, compiled at load in a sandbox.

Two different "missing" cases, on purpose:
- a name that is not in the template context (`{{ evnt.user }}`) is a typo: a load error;
- a field this particular event lacks (`{{ event.user.id }}` on a role event) renders '' or the
  template's `default(...)`: every field is optional on the wire, so it must never fail an action.
Event values are passed as data and never parsed as templates, so `{{` inside an event is just text.
A field sent on a channel with its own syntax (Slack mrkdwn, HTML, a URL path) is compiled with that
channel's `Escape` (actions/escaping.py): every interpolated value is escaped, the literal text is not.

Most action templates are text with plain substitutions (`{{ claims.username }}`, `{{ event.a[0].b }}`).
Those skip Jinja entirely: Jinja spends about 1 ms compiling each template, which made loading 10,000
rules take over 20 s, and a direct lookup also renders faster. Both paths read a mapping's keys before its
attributes (`{{ event.items }}` is the event's `items` field, not dict.items), so they render alike.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator

from jinja2 import ChainableUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from actions.escaping import Escape
from engine.config.schema import suggest
from engine.match.context import TEMPLATE_NAMES
from engine.match.paths import MISSING, plain_steps, step_into

Render = Callable[[dict[str, Any]], str]


def _tojson(value: Any, indent: int | None = None) -> str:
    """Plain JSON (Jinja's own tojson escapes for HTML, which is wrong in Slack text and HTTP bodies)."""
    if isinstance(value, ChainableUndefined):
        value = None
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


class _Environment(SandboxedEnvironment):
    def getattr(self, obj: Any, attribute: str) -> Any:
        """Event data first: a mapping's key wins over a method of the same name."""
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _environment(escape: Escape | None) -> _Environment:
    """A sandbox whose `{{ ... }}` outputs pass through `escape` (Jinja's finalize sees exactly the
    interpolated values, never the template's literal text); a value marked `| safe` is left as it is."""
    def finalize(value: Any) -> Any:
        if escape is None or isinstance(value, Markup):
            return value
        return escape.apply(str(value))

    environment = _Environment(undefined=ChainableUndefined, autoescape=False, keep_trailing_newline=True,
                               finalize=finalize)
    environment.filters["tojson"] = _tojson
    return environment


_ENVS: dict[Escape | None, _Environment] = {}

_SUBSTITUTION = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\]|\['[^'\]]*'\]"
                           r"|\[\"[^\"\]]*\"\])*)\s*\}\}")
_MAPPING_NAMES = ("event", "envelope", "claims", "rule", "geo")


_EXTRA_NAMES: ContextVar[tuple[str, ...]] = ContextVar("extra_template_names", default=())


@contextmanager
def extra_names(names: tuple[str, ...]) -> Iterator[None]:
    """Allow `names` besides TEMPLATE_NAMES (and the names of enclosing blocks) in templates compiled inside
    the block (a stateful rule's actions see `count`, `events`, ...; in any other rule these names are typos)."""
    token = _EXTRA_NAMES.set(_EXTRA_NAMES.get() + tuple(names))
    try:
        yield
    finally:
        _EXTRA_NAMES.reset(token)


def _names() -> tuple[str, ...]:
    return TEMPLATE_NAMES + _EXTRA_NAMES.get()


def _unknown_name(name: str) -> ValueError:
    names = _names()
    return ValueError(f"unknown template name '{name}'{suggest(name, names)}; available: {', '.join(names)}")


def _substitutions(source: str) -> list[Any] | None:
    """Text pieces and (name, steps) lookups when `source` is only plain substitutions, else None."""
    if "{%" in source or "{#" in source:
        return None
    parts: list[Any] = []
    position = 0
    for match in _SUBSTITUTION.finditer(source):
        name, path = match.groups()
        if path and name not in _MAPPING_NAMES:
            return None  # attributes of datetimes and strings: leave them to Jinja
        parts += [source[position:match.start()], (name, plain_steps("$" + path))]
        position = match.end()
    parts.append(source[position:])
    return None if any(isinstance(p, str) and "{{" in p for p in parts) else parts


def _direct(parts: list[Any], escape: Escape | None) -> Render:
    """`parts` alternate text and lookups, starting and ending with text (see _substitutions); each
    looked-up value passes through `escape`."""
    for part in parts:
        if isinstance(part, tuple) and part[0] not in _names():
            raise _unknown_name(part[0])
    head = parts[0]
    rest = tuple((name, tuple(steps), text) for (name, steps), text in zip(parts[1::2], parts[2::2]))
    convert: Callable[[Any], str] = str if escape is None else (lambda value: escape.apply(str(value)))

    def render(context: dict[str, Any]) -> str:
        out = head
        for name, steps, text in rest:
            value = context.get(name, MISSING)
            for step in steps:
                if value is MISSING:
                    break
                value = step_into(value, step)
            out += ("" if value is MISSING else convert(value)) + text
        return out

    return render


def compile_template(source: str, escape: Escape | None = None) -> Render:
    """A render function for `source` whose interpolated values are escaped with `escape` (None: as they
    are); ValueError naming the problem (syntax, unknown name) otherwise."""
    parts = _substitutions(source)
    if parts is not None:
        return _direct(parts, escape)
    environment = _ENVS.get(escape) or _ENVS.setdefault(escape, _environment(escape))
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"invalid template (line {exc.lineno} of the template): {exc.message}") from None
    unknown = sorted(meta.find_undeclared_variables(tree) - set(_names()))
    if unknown:
        raise _unknown_name(unknown[0])
    template = environment.from_string(tree)
    return template.render
