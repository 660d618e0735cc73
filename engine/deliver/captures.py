"""Fill in `{{ captured.NAME }}` when a job is sent.

At match time `captured.NAME` rendered as a placeholder (engine/match/rule_actions.py: CapturePlaceholders);
the job runs only after every earlier job of its `ordered_by` key and destination has finished, so what an
earlier `capture:` stored is there now. Each value is escaped for the field's channel exactly as an
interpolated event value would have been (a SCIM id in a URL path is one percent-encoded segment). A value
that was never captured fails the job permanently with a reason naming it: a delete must never go out as
`DELETE /Users/`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from actions.base import Field
from actions.escaping import valid_text
from engine.errors import PermanentError
from engine.store.base import Job


def fill(job: Job, captured: Mapping[str, Any], fields: Mapping[str, Field]) -> dict[str, Any]:
    """`job.message` with every placeholder replaced; PermanentError when a named value is missing."""
    nonce = job.captured_nonce
    pattern = re.compile(f"{nonce}([0-9a-f]*){nonce}")
    missing: list[str] = []

    def text(value: str, field: Field | None) -> str:
        def replace(match: re.Match[str]) -> str:
            name = bytes.fromhex(match.group(1)).decode("utf-8", "replace")
            if name not in captured:
                missing.append(name)
                return ""
            found = captured[name]
            plain = valid_text(found if isinstance(found, str) else json.dumps(found, ensure_ascii=False))
            return field.escape.apply(plain) if field is not None and field.escape is not None else plain

        return pattern.sub(replace, value)

    def walk(value: Any, field: Field | None) -> Any:
        if isinstance(value, str):
            return text(value, field)
        if isinstance(value, dict):
            return {k: walk(v, field) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, field) for v in value]
        return value

    message = {name: walk(value, fields.get(name)) for name, value in job.message.items()}
    if missing:
        names = ", ".join(f"captured.{name}" for name in sorted(set(missing)))
        raise PermanentError(f"{names} missing for ordered_by {job.ordered_by[:200]!r}: no earlier job captured it "
                             "(it failed, became a dead letter, or its answer had no such value); not sent")
    if nonce in json.dumps(message, ensure_ascii=False):
        raise PermanentError("a captured value was changed by a template filter before it was known; use "
                             "{{ captured.NAME }} as a plain substitution")
    return message
