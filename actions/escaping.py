"""Escaping for the channel a field is sent on: one function per output format, applied where event data
enters a template.

A rule's literal template text is trusted: it is where a deliberate Slack mention (`<!channel>`,
`<@U024BE7LH>`, a link `<https://example.com|text>`) or an HTML tag belongs. Every value a template
interpolates (`{{ ... }}`, including the result of filters such as `join` or `tojson`) is event data and is
escaped for the field's format before it joins the literal text. An action declares the format per field
(`Field("text", escape=SLACK)`); engine/match/templates.py applies it at each interpolation, so no action
escapes after rendering (where trusted and untrusted text can no longer be told apart).

A value marked safe in the template (`{{ x | safe }}`, Jinja's Markup) is passed through unescaped: that
is the rule author's explicit choice, never something event data can make.

Formats:
- SLACK: Slack's documented escaping of `&`, `<`, `>` (https://api.slack.com/reference/surfaces/formatting
  #escaping): event text can then never form a mention, a channel link or a `<url|text>` link.
- HTML: `&`, `<`, `>`, `"`, `'` as entities (markupsafe, as Jinja's autoescape does): for the html part of
  an email, or any other HTML body.
- PATH_SEGMENT: percent-encoding of everything outside RFC 3986 unreserved characters, `/` included, so a
  value is exactly one path segment: it cannot add a segment, a query, a fragment or a scheme/host.

Every rendered text is also made valid Unicode (`valid_text`: a lone surrogate, which no channel can
encode, becomes U+FFFD), so UTF-8 mail, JSON and percent-encoding never fail on event data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

from markupsafe import escape as _markup_escape


@dataclass(frozen=True)
class Escape:
    """One output format: `name` for messages and docs, `apply` turns event text into inert text."""

    name: str
    apply: Callable[[str], str]


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(value: str) -> str:
    """`value` with every lone surrogate replaced by U+FFFD (cheap when there is none)."""
    return _LONE_SURROGATE.sub("\ufffd", value) if _LONE_SURROGATE.search(value) else value


def slack_text(value: str) -> str:
    """Slack's three control characters as entities (`&` first, so an entity in the value stays text)."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def html_text(value: str) -> str:
    """HTML entities for `& < > " '`, as Jinja's autoescape writes them."""
    return str(_markup_escape(value))


def path_segment(value: str) -> str:
    """`value` percent-encoded as one path segment (`/`, `?`, `#`, `%`, `\\` and `:` included)."""
    return quote(valid_text(value), safe="")


SLACK = Escape("slack", slack_text)
HTML = Escape("html", html_text)
PATH_SEGMENT = Escape("path-segment", path_segment)
