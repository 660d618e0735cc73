"""`teams`: post an Adaptive Card to a Microsoft Teams channel through a Workflows webhook (`webhook_url`).

Contract (Teams "Post to a channel when a webhook request is received" workflow): `POST` a JSON message
`{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
"content": <AdaptiveCard>}]}`; the workflow answers 202 Accepted (200 from older connectors). 400 (a card
the workflow rejects), 401/403/404 (a revoked or wrong URL) are permanent; 429 and 5xx retry, honouring
Retry-After. The webhook URL carries its own signature and is a secret.

Card text is Markdown in Teams. The rule's literal text is trusted (deliberate **bold** or links belong
there); every value a template interpolates is escaped for Teams Markdown at that point (TEAMS_MARKDOWN,
applied by the template layer, see actions/escaping.py): Markdown characters and list markers are
backslash-escaped, so event data cannot add links, mentions or formatting. Control characters are dropped
and each text is cut to a size Teams accepts. `link` must be an absolute http(s) URL (an Action.OpenUrl
button), otherwise the send is refused.
"""

from __future__ import annotations

import re
from typing import Any, Mapping
from urllib.parse import urlsplit

from actions.base import RETRY_FIELD, ActionContext, Field, clean_text, json_bytes, require_any
from actions.escaping import Escape
from actions.httpresult import HttpExchangeAction, HttpRequest
from engine.errors import PermanentError
from engine.secrets import reveal

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
TEXT_CHARS = 20_000  # a card over ~28 KB is refused by Teams; cut event text well below that
_MARKDOWN = re.compile(r"([\\`*_\[\]()~<>])")
_LIST_MARKER = re.compile(r"^(\s*)([-+]|\d+\.)(?=\s)", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def markdown_text(value: str) -> str:
    """Event text as literal Teams Markdown: Markdown/HTML characters and list markers backslash-escaped."""
    return _LIST_MARKER.sub(_escape_marker, _MARKDOWN.sub(r"\\\1", value))


TEAMS_MARKDOWN = Escape("teams-markdown", markdown_text)


def plain(value: object, limit: int = TEXT_CHARS) -> str:
    """Rendered card text without control characters, cut to `limit`."""
    return _CONTROL.sub("", clean_text(value))[:limit]


def _escape_marker(match: re.Match[str]) -> str:
    """`- x` / `1. x` at a line start stay text, not a list."""
    indent, marker = match.groups()
    return indent + (marker[:-1] + "\\." if marker.endswith(".") else "\\" + marker)


class TeamsAction(HttpExchangeAction):
    name = "teams"
    destination_type = "teams"
    rule_fields = {
        "to": Field("destination", required=True, help="a destination of type teams"),
        "title": Field("text", help="bold first line of the card", escape=TEAMS_MARKDOWN),
        "text": Field("text", help="the message", escape=TEAMS_MARKDOWN),
        "facts": Field("json", help="a mapping of names to values, shown as a table", escape=TEAMS_MARKDOWN),
        "link": Field("text", help="an http(s) URL for an 'Open' button"),
        "retry": RETRY_FIELD,
    }
    destination_fields = {
        "webhook_url": Field("value", required=True, help="the workflow's URL (use ${ENV} or webhook_url_file)"),
        "timeout": Field("value", help="read timeout in seconds (default 10)"),
        "connect_timeout": Field("value", help="connect timeout in seconds (default 5)"),
    }
    test_fields = {"title": "idhooks test", "text": "{{ type }} for {{ username }} from {{ ip }}"}

    def __init__(self, destination_name: str | None, destination: Mapping[str, Any] | None,
                 context: ActionContext) -> None:
        super().__init__(destination_name, destination, context)
        read = self.destination_reader()
        self.webhook_url = read.url("webhook_url", required=True, secret=True)
        self.timeout = read.http_timeouts()
        read.done()
        self.secrets = read.secrets()

    @classmethod
    def check_rule_fields(cls, fields: Mapping[str, Any]) -> list[str]:
        problems = super().check_rule_fields(fields) + require_any(fields, "title", "text")
        if "facts" in fields and not isinstance(fields["facts"], Mapping):
            problems.append("facts: expected a mapping of names to values")
        return problems

    def request(self, rendered: Mapping[str, Any], idempotency_key: str) -> HttpRequest:
        return HttpRequest("POST", str(reveal(self.webhook_url)), {
            "secrets": self.secrets, "timeout": self.timeout, "clock": self.context.clock,
            "data": json_bytes(self.message(rendered)), "headers": {"Content-Type": "application/json"}})

    def message(self, rendered: Mapping[str, Any]) -> dict[str, Any]:
        """The Workflows message carrying one Adaptive Card."""
        body: list[dict[str, Any]] = []
        if rendered.get("title"):
            body.append({"type": "TextBlock", "text": plain(rendered["title"], 400), "weight": "Bolder",
                         "size": "Medium", "wrap": True})
        if rendered.get("text"):
            body.append({"type": "TextBlock", "text": plain(rendered["text"]), "wrap": True})
        facts = rendered.get("facts")
        if isinstance(facts, Mapping) and facts:
            body.append({"type": "FactSet", "facts": [{"title": plain(k, 200), "value": plain(v, 2000)}
                                                      for k, v in facts.items()]})
        card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                                "type": "AdaptiveCard", "version": "1.4", "body": body}
        if rendered.get("link"):
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": _link(rendered["link"])}]
        return {"type": "message", "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": card}]}


def _link(value: object) -> str:
    url = clean_text(value).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c in url for c in " \r\n\t\"<>"):
        raise PermanentError(f"link {url[:200]!r} is not an absolute http(s) URL")
    return url
