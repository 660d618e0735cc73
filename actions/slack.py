"""`slack`: post a message through an incoming webhook (`webhook_url`) or a bot token (`chat.postMessage`).

Two contracts (https://api.slack.com/messaging/webhooks, https://api.slack.com/methods/chat.postMessage):
- incoming webhook: HTTP status carries the result; 200 `ok`, 400 `invalid_payload`, 403/404/410 (e.g.
  `no_service`, `channel_not_found`) are permanent, 429 and 5xx retryable.
- Web API: mostly HTTP 200 with `{"ok": false, "error": "..."}`; a few errors are transient
  (`ratelimited`, `internal_error`, ...), every other one is permanent (`channel_not_found`,
  `invalid_auth`, `not_in_channel`, ...).
Event values in `text`, `blocks` and `attachments` are escaped (`&`, `<`, `>`) where they enter the
template, so a mention or link can only come from the rule's own text (actions/escaping.py).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from actions.base import RETRY_FIELD, ActionContext, Field, host_of, require_any
from actions.escaping import SLACK
from actions.httpresult import HttpExchangeAction, HttpRequest, HttpResult, snippet
from engine.errors import PermanentError, RetryableError
from engine.secrets import reveal

API_URL = "https://slack.com/api"
TRANSIENT_API_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                                  "request_timeout"})
_MESSAGE_KEYS = ("text", "blocks", "attachments", "channel", "thread_ts", "username", "icon_emoji")


class SlackAction(HttpExchangeAction):
    name = "slack"
    destination_type = "slack"
    rule_fields = {
        "to": Field("destination", required=True, help="a destination of type slack"),
        "text": Field("text", help="the message text (also the notification fallback when blocks are given)",
                      escape=SLACK),
        "blocks": Field("json", help="Block Kit blocks", escape=SLACK),
        "attachments": Field("json", help="legacy attachments", escape=SLACK),
        "channel": Field("text", help="channel for a bot token (overrides the destination's)"),
        "thread_ts": Field("text", help="reply in this thread"),
        "username": Field("text"),
        "icon_emoji": Field("text"),
        "retry": RETRY_FIELD,
    }
    destination_fields = {
        "webhook_url": Field("value", help="incoming webhook URL (use ${ENV} or webhook_url_file)"),
        "token": Field("value", help="bot token xoxb-... for chat.postMessage (use ${ENV} or token_file)"),
        "channel": Field("value", help="default channel for the bot token"),
        "api_url": Field("value", help=f"Web API base URL (default {API_URL})"),
        "timeout": Field("value", help="seconds for the whole attempt: connect, send and the whole answer "
                                      "(default 10)"),
        "connect_timeout": Field("value", help="connect timeout in seconds (default 5)"),
    }
    test_fields = {"text": "idhooks test: {{ type }} for {{ username }} from {{ ip }}"}

    def __init__(self, destination_name: str | None, destination: Mapping[str, Any] | None,
                 context: ActionContext) -> None:
        super().__init__(destination_name, destination, context)
        read = self.destination_reader()
        self.webhook_url = read.url("webhook_url", secret=True)
        self.token = read.secret_text("token")
        self.channel = read.text("channel")
        self.api_url = (read.url("api_url") or API_URL).rstrip("/")
        self.timeout = read.http_timeouts()
        if (self.webhook_url is None) == (self.token is None):
            read.add(None, "give exactly one of webhook_url (incoming webhook) or token (bot, chat.postMessage)")
        read.done()
        self.secrets = read.secrets()

    def target(self) -> str:
        return host_of(self.webhook_url if self.webhook_url is not None else self.api_url)

    @classmethod
    def check_rule_fields(cls, fields: Mapping[str, Any]) -> list[str]:
        return super().check_rule_fields(fields) + require_any(fields, "text", "blocks")

    def request(self, rendered: Mapping[str, Any], idempotency_key: str) -> HttpRequest:
        message = {k: rendered[k] for k in _MESSAGE_KEYS if rendered.get(k) not in (None, "")}
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self.webhook_url is not None:
            url = str(reveal(self.webhook_url))
        else:
            message.setdefault("channel", self.channel)
            if not message.get("channel"):
                raise PermanentError("no channel: set channel on the destination or the rule")
            url, headers["Authorization"] = f"{self.api_url}/chat.postMessage", f"Bearer {reveal(self.token)}"
        return HttpRequest("POST", url, {"secrets": self.secrets, "timeout": self.timeout,
                                         "clock": self.context.clock, "json": message, "headers": headers})

    def answered(self, rendered: Mapping[str, Any], result: HttpResult) -> None:
        """chat.postMessage answers 200 with `ok: false` for most errors (an incoming webhook: 200 is delivered)."""
        if self.webhook_url is not None:
            return
        shown = snippet(result.text(), self.secrets)
        try:
            answer = json.loads(result.body)
        except ValueError:
            raise RetryableError(f"chat.postMessage answered non-JSON: {shown[:120]}",
                                 response_snippet=shown) from None
        if isinstance(answer, dict) and answer.get("ok") is True:
            return
        error = str(answer.get("error", "unknown_error")) if isinstance(answer, dict) else "unknown_error"
        if error in TRANSIENT_API_ERRORS:
            raise RetryableError(f"chat.postMessage failed: {error}", response_snippet=shown)
        raise PermanentError(f"chat.postMessage failed: {error}", response_snippet=shown)
