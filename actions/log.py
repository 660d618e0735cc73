"""`log`: write the rendered message as one line of the server's own log. Needs no destination."""

from __future__ import annotations

from typing import Any, Mapping

from actions.base import Action, Field


class LogAction(Action):
    name = "log"
    rule_fields = {"message": Field("text", required=True, help="the line to log")}

    def send(self, rendered: Mapping[str, Any], idempotency_key: str) -> None:
        message = str(rendered.get("message", "")).replace("\r", "\\r").replace("\n", "\\n")
        self.context.logger.warning("rule action log: %s", message, extra={"idempotency_key": idempotency_key})
