"""The action plugin interface. An action type is one module in `actions/` defining one `Action` subclass;
`actions.registry()` finds it by its `name`, so adding an action type is adding one file.

Two halves, both strict:
- rule side (`rule_fields`): the keys a rule may give under `- <name>: {...}`; every string leaf is a
  Jinja template compiled at load (engine/match) and rendered per event into a plain dict, stored in the job.
- destination side (`destination_fields`): the keys of `destinations.<dest>` in config.yaml with
  `type: <destination_type>`; secrets arrive as engine.secrets.Secret and are revealed only when sending.
  Set `self.secrets = read.secrets()` after reading: it adds the credential parts of every URL read
  (userinfo, query), and the worker redacts `secrets` from every stored error and log line.

Output is escaped for its channel where event data enters the template, never after rendering: a field
whose text is read by a parser on the other side (Slack mrkdwn, HTML, a URL path) declares the format with
`Field(..., escape=SLACK | HTML | PATH_SEGMENT)` from actions/escaping.py (one function per format; add a
format there when a new channel needs one, e.g. a markup a chat or incident tool interprets). Every value a
template interpolates is then escaped for that format, while the rule's literal text (a deliberate
`<!channel>`, an HTML tag, a fixed path) is trusted. Plain text fields (email text, subjects, JSON bodies,
which the JSON encoder makes safe) need no escape; header-like values use `fold_line()`.

`send()` delivers one rendered action and signals failure by exception type only:
RetryableError (connection errors, timeouts, 429, 5xx; `retry_after` honours Retry-After) or
PermanentError (other 4xx, rejected payload, bad credentials).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping
from urllib.parse import urlsplit

from actions.destination import DestinationReader
from actions.escaping import Escape, valid_text
from actions.httpclient import HttpClient
from actions.httplane import LaneClient
from engine.config.retry import policy_problems
from engine.secrets import Secret, find_secrets, reveal


@dataclass(frozen=True)
class Field:
    """One allowed key. `kind`: 'text' (a template), 'json' (a YAML structure whose string leaves are
    templates), 'list' (a list of templates), 'destination' (the name of a configured destination),
    'value' (a plain YAML value, not templated). `escape`: the channel format every interpolated value is
    escaped for (actions/escaping.py), None for plain text."""

    kind: str = "text"
    required: bool = False
    help: str = ""
    escape: Escape | None = None
    default: Any = None  # compiled like a value the rule gave, when the rule gives none (EVENT_RECORD: see below)


EVENT_RECORD = "{{ __event_record__ }}"
"""A Field default that renders to a structure, not text: the event with what idhooks derived from it (type,
user, IP, claims, geo) and the rule that matched. Splunk and NATS send it when a rule names no payload."""


@dataclass
class ActionContext:
    """The collaborators an action needs, injected so tests swap them without monkey-patching. `http` is
    shared by every HTTP action of one configuration (its keep-alive connections), and takes nothing from
    environment variables: a destination names its own `proxy` and `ca_file`."""

    http: HttpClient = field(default_factory=HttpClient)
    smtp_factory: Callable[..., Any] | None = None
    clock: Callable[[], float] = time.time
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("idhooks.actions"))
    source: str = "config.yaml"  # the config file, for `file:line:` in destination errors


RETRY_FIELD = Field("value", help="override the retry policy: {retry_for, backoff_initial, backoff_max}")
"""Every action accepts `retry:` (rule side and destination side), checked by engine/config/retry.py; the
rule's value becomes the job's `retry` field (engine/match/jobs.py) and the worker applies both."""

COMMON_FIELDS: Mapping[str, Field] = {
    "ordered_by": Field("text", help="a key (e.g. {{ user_id }}): jobs with the same key for the same destination "
                                     "are delivered in event order, one at a time"),
}
"""Rule fields every action type accepts besides its own `rule_fields` (engine/deliver reads them)."""


def clean_text(value: object) -> str:
    """`value` as text that encodes to UTF-8: lone surrogates (valid in JSON escapes, invalid in UTF-8)
    become U+FFFD instead of failing the send."""
    return valid_text(str(value))


def clean_json(value: Any) -> Any:
    """`value` with every string (keys included) passed through clean_text: safe to encode anywhere."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def json_bytes(value: Any) -> bytes:
    """Strict JSON (NaN/Infinity become null) in UTF-8, whatever strings the event carried."""
    return json.dumps(_finite(clean_json(value)), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def host_of(url: object) -> str:
    """host[:port] of a URL (which may be a Secret): what listings may show of it."""
    parts = urlsplit(str(reveal(url)))
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname}:{port}" if port else str(parts.hostname or "-")


_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


_LINE_BREAKS = re.compile(r"[\r\n]+")


def fold_line(value: object) -> str:
    """`value` as one line: CR/LF runs become one space, so event data can never start a new header, and the
    other control characters (NUL, ESC, DEL, ...; not tab) become U+FFFD, which no header may carry either."""
    text = str(value)
    if text.isprintable():  # no CR, LF or other control character (nearly every value): nothing to fold
        return text
    return _CONTROLS.sub("\ufffd", _LINE_BREAKS.sub(" ", text))


def check_choice(fields: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> list[str]:
    """A problem when a literal (untemplated) rule value is not one of `allowed` (checked again at send)."""
    value = fields.get(key)
    if isinstance(value, str) and "{" not in value and value.strip().lower() not in allowed:
        return [f"{key}: expected one of {', '.join(allowed)}, got {value!r}"]
    return []


def require_any(fields: Mapping[str, Any], *names: str) -> list[str]:
    """A problem unless the rule gives at least one of `names` (e.g. text or html)."""
    if any(name in fields for name in names):
        return []
    return [f"{names[0]}: give {' or '.join(names)} (or both)" if len(names) == 2 else
            f"{names[0]}: give one of {', '.join(names)}"]


class Action(ABC):
    """Base of every action type; one instance per (action type, destination)."""

    name: ClassVar[str]
    destination_type: ClassVar[str | None] = None  # None: needs no destination (e.g. log)
    rule_fields: ClassVar[Mapping[str, Field]] = {}
    destination_fields: ClassVar[Mapping[str, Field]] = {}
    test_fields: ClassVar[Mapping[str, Any]] = {}
    """Rule fields of the sample `idhooks destinations test` sends when no rule names the destination."""
    destination_templates: ClassVar[tuple[str, ...]] = ()
    """Destination keys that are templates (e.g. a NATS subject): engine/match compiles them with the rule's
    actions and renders them per event into the job's fields under the same name."""

    def __init__(self, destination_name: str | None, destination: Mapping[str, Any] | None,
                 context: ActionContext) -> None:
        """Validate the destination (raise engine.errors.ConfigError listing every problem)."""
        self.destination_name = destination_name
        self.destination: Mapping[str, Any] = destination if destination is not None else {}  # keeps YAML lines
        self.context = context
        self.secrets: list[Secret] = find_secrets(self.destination)  # an action sets read.secrets() when it reads

    def destination_reader(self) -> DestinationReader:
        """A strict reader of this action's destination: unknown keys are already reported."""
        read = DestinationReader(self.context.source, self.destination_name or "", self.destination)
        read.check_keys(self.destination_fields)
        return read

    def target(self) -> str:
        """Where this destination sends, for listings: host[:port] only, never a path, query or credential."""
        for key in ("base_url", "url", "webhook_url", "api_url"):
            value = self.destination.get(key)
            if value is not None:
                return host_of(value)
        host = self.destination.get("host")
        port = self.destination.get("port")
        return f"{host}:{port}" if host and port else str(host or "-")

    @classmethod
    def check_rule_fields(cls, fields: Mapping[str, Any]) -> list[str]:
        """Problems in the rendered-independent shape of a rule's fields (beyond unknown/missing keys,
        which engine/match checks from `rule_fields`). Messages are `field: what is wrong`."""
        return policy_problems(fields.get("retry"), "retry")

    sends_on_loop: ClassVar[bool] = False
    """Whether `send_async` is implemented: the delivery lane (engine/deliver/lane.py) then sends this action's
    jobs on its event loop instead of a delivery thread."""

    ends_by_lane_deadline: ClassVar[bool] = False
    """Whether `send_async` itself ends every wait by the lane's deadline (actions/httpresult.LANE_DEADLINE), as
    exchange_async does: the lane then needs no `asyncio.timeout()` of its own around the send, whose bookkeeping
    cost as much as a tenth of a send (issue 14)."""

    async def send_async(self, rendered: Mapping[str, Any], idempotency_key: str,
                         lane: LaneClient) -> Mapping[str, Any] | None:
        """`send()` on the delivery lane's event loop, with `lane` for its HTTP requests (exchange_async in
        actions/httpresult.py): the same request, checks and errors. Never blocks the loop (a resolver call or
        other blocking work runs in an executor)."""
        raise NotImplementedError(f"the {self.name} action sends only from a delivery thread")

    @abstractmethod
    def send(self, rendered: Mapping[str, Any], idempotency_key: str) -> Mapping[str, Any] | None:
        """Deliver one rendered action; raise RetryableError or PermanentError on failure. An action may
        return values taken from the answer (http's `capture:`), which the worker stores under the job's
        `ordered_by` key for later jobs' `{{ captured.NAME }}`."""
