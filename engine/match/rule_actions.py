"""A rule's `actions:` compiled against the action registry (actions/): every key checked against the
class's `rule_fields`, every template compiled (with the field's channel escape, see actions/escaping.py),
every destination resolved, so rendering does no parsing.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from actions import registry
from actions.base import COMMON_FIELDS, EVENT_RECORD, Action, Field
from actions.escaping import Escape, valid_text
from engine.config.schema import suggest
from engine.match.conditions import Report, line_of
from engine.match.templates import compile_template, extra_names

Renderer = Callable[[dict[str, Any], list[str]], Any]
"""render(template_context, errors) -> plain JSON value; a failing template adds to `errors`, renders ''."""


CAPTURED = "captured"
CAPTURE_NONCE_FIELD = "__captured__"
"""Rendered-field key holding the nonce of a job whose templates use `captured` (engine/deliver/captures.py
fills the values in when the job is sent)."""
_USES_CAPTURED = re.compile(r"\{[{%][^}]*\bcaptured\b")


class CapturePlaceholders(dict):
    """What `captured` is while an event is matched: any `captured.NAME` renders as a placeholder
    `NONCE<hex of NAME>NONCE`, replaced by the stored value when the job is sent, after the jobs before it.
    The nonce is random per rendering (uppercase letters outside hex), so event data cannot forge one, and
    placeholders survive every channel escape unchanged."""

    def __init__(self, nonce: str) -> None:
        super().__init__()
        self.nonce = nonce

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __getitem__(self, name: str) -> str:
        return f"{self.nonce}{name.encode('utf-8').hex()}{self.nonce}"

    def get(self, name: str, default: Any = None) -> str:  # type: ignore[override]  # every name is present
        return self[name]


def shown_captured(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` of a rendered action for display: placeholders as `{{ captured.NAME }}`, no nonce."""
    nonce = fields[CAPTURE_NONCE_FIELD]
    pattern = re.compile(f"{nonce}([0-9a-f]*){nonce}")

    def show(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(lambda m: "{{ captured.%s }}" % bytes.fromhex(m.group(1)).decode("utf-8", "replace"),
                               value)
        if isinstance(value, dict):
            return {k: show(v) for k, v in value.items()}
        if isinstance(value, list):
            return [show(v) for v in value]
        return value

    return {k: show(v) for k, v in fields.items() if k != CAPTURE_NONCE_FIELD}


def new_nonce() -> str:
    return "".join(secrets.choice("GHJKLMNPQRSTUVWXYZ") for _ in range(24))


@dataclass
class CompiledAction:
    index: int
    type: str
    destination: str | None
    fields: dict[str, Renderer]
    uses_captured: bool = False

    def render(self, context: dict[str, Any], errors: list[str]) -> dict[str, Any]:
        rendered = {}
        if self.uses_captured:
            nonce = new_nonce()
            context = {**context, CAPTURED: CapturePlaceholders(nonce)}
            rendered[CAPTURE_NONCE_FIELD] = nonce
        for name, render in self.fields.items():  # a loop, not a comprehension: one frame less per match
            rendered[name] = render(context, errors)
        return rendered


def _text(source: Any, where: str, escape: Escape | None) -> Renderer:
    if source is None or isinstance(source, (dict, list)):
        raise ValueError("expected text (a template string)")
    template = compile_template(source if isinstance(source, str) else json.dumps(source), escape)

    def render(context: dict[str, Any], errors: list[str]) -> str:
        try:
            text = template(context)
        except Exception as exc:  # noqa: BLE001 - a template failing on odd data must not stop the event
            errors.append(f"{where}: template failed: {type(exc).__name__}: {exc}")
            return ""
        return valid_text(text)  # every channel (UTF-8 mail, JSON, the stored job) can encode it

    return render


def _json(value: Any, where: str, escape: Escape | None) -> Renderer:
    """A YAML structure whose string leaves are templates; the result is always plain JSON."""
    if isinstance(value, dict):
        parts = {str(k): _json(v, f"{where}.{k}", escape) for k, v in value.items()}
        return lambda context, errors: {k: r(context, errors) for k, r in parts.items()}
    if isinstance(value, list):
        items = [_json(v, f"{where}[{i}]", escape) for i, v in enumerate(value)]
        return lambda context, errors: [r(context, errors) for r in items]
    if isinstance(value, str):
        return _text(value, where, escape)
    return lambda context, errors: value


_RECORD_NAMES = ("type", "uri", "user_id", "username", "ip", "claims", "geo")


def _event_record(context: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    """The EVENT_RECORD default: the event, what idhooks derived from it (enrichment included), and the rule
    that matched."""
    record: dict[str, Any] = {name: context[name] for name in _RECORD_NAMES if name in context}
    record["event"] = context.get("event")
    occurred = context.get("occurred_at")
    if occurred is not None:
        record["occurred_at"] = occurred.isoformat() if hasattr(occurred, "isoformat") else str(occurred)
    rule = context.get("rule") or {}
    record["decision"] = {"rule": rule.get("id"), "matched": True}
    return record


def _list(value: Any, where: str, escape: Escape | None) -> Renderer:
    items = value if isinstance(value, list) else [value]
    renders = [_text(v, f"{where}[{i}]", escape) for i, v in enumerate(items)]
    return lambda context, errors: [r(context, errors) for r in renders]


def _destination(value: Any, cls: type[Action], destinations: Mapping[str, Mapping[str, Any]]) -> Renderer:
    if not isinstance(value, str) or not value:
        raise ValueError("expected the name of a destination from config.yaml")
    if value not in destinations:
        known = sorted(destinations)
        raise ValueError(f"unknown destination '{value}'{suggest(value, known)}; configured destinations: "
                         f"{', '.join(known) if known else 'none (add one under destinations: in config.yaml)'}")
    found = destinations[value].get("type")
    if cls.destination_type is not None and found != cls.destination_type:
        raise ValueError(f"destination '{value}' has type '{found}', but a {cls.name} action needs a "
                         f"destination of type '{cls.destination_type}'")
    return lambda context, errors: value


def _field(spec: Field, value: Any, where: str, cls: type[Action],
           destinations: Mapping[str, Mapping[str, Any]]) -> Renderer:
    if value is EVENT_RECORD or value == EVENT_RECORD:
        return _event_record
    if spec.kind == "destination":
        return _destination(value, cls, destinations)
    if spec.kind == "json":
        return _json(value, where, spec.escape)
    if spec.kind == "list":
        return _list(value, where, spec.escape)
    if spec.kind == "text":
        return _text(value, where, spec.escape)
    return lambda context, errors: value


def compile_action(node: Any, index: int, destinations: Mapping[str, Mapping[str, Any]],
                   report: Report) -> CompiledAction | None:
    """One `- <type>: {field: value}` item; every problem goes to `report`, None if any."""
    where = f"actions[{index}]"
    kinds = registry()
    if not isinstance(node, dict) or len(node) != 1:
        report(line_of(node), where, f"expected one action type as the key, like `- log: {{message: ...}}`; "
                                   f"action types: {', '.join(sorted(kinds))}")
        return None
    (name, fields), = node.items()
    cls = kinds.get(name)
    if cls is None:
        report(line_of(node, name), where, f"unknown action type '{name}'{suggest(str(name), sorted(kinds))}; "
                                         f"action types: {', '.join(sorted(kinds))}")
        return None
    where = f"{where}.{name}"
    if not isinstance(fields, dict):
        report(line_of(node, name), where, f"expected a mapping of fields: {', '.join(cls.rule_fields)}")
        return None
    with extra_names((CAPTURED,)):
        return _compile_fields(cls, fields, index, where, destinations, report)


def _compile_fields(cls: type[Action], fields: dict, index: int, where: str,
                    destinations: Mapping[str, Mapping[str, Any]], report: Report) -> CompiledAction | None:
    allowed = tuple(cls.rule_fields) + tuple(COMMON_FIELDS)
    problems = 0
    renderers: dict[str, Renderer] = {}
    for key, value in fields.items():
        spec = cls.rule_fields.get(key) or COMMON_FIELDS.get(key)
        if spec is None:
            report(line_of(fields, key), f"{where}.{key}", f"unknown field{suggest(str(key), allowed)}; "
                                                         f"{cls.name} takes: {', '.join(allowed)}")
            problems += 1
            continue
        try:
            renderers[key] = _field(spec, value, f"{where}.{key}", cls, destinations)
        except ValueError as exc:
            report(line_of(fields, key), f"{where}.{key}", str(exc))
            problems += 1
    for key, spec in cls.rule_fields.items():
        if spec.required and key not in fields:
            report(line_of(fields), f"{where}.{key}", f"missing required field ({spec.help or spec.kind})")
            problems += 1
    uses_captured = _uses_captured(fields)
    messages = cls.check_rule_fields(fields)
    if uses_captured and "ordered_by" not in fields:
        messages.append("captured: a template uses captured values, which are stored per key: add ordered_by "
                        "(e.g. ordered_by: '{{ user_id }}')")
    for message in messages:
        report(line_of(fields), where, message)
        problems += 1
    if problems:
        return None
    destination = next((fields[k] for k, s in cls.rule_fields.items() if s.kind == "destination" and k in fields),
                       None)
    for key, spec in cls.rule_fields.items():
        if key not in fields and spec.default is not None:
            renderers[key] = _field(spec, spec.default, f"{where}.{key}", cls, destinations)
    try:
        renderers.update(_destination_templates(cls, destinations.get(destination or "") or {}, renderers))
    except ValueError as exc:
        report(line_of(fields), where, f"destination '{destination}': {exc}")
        return None
    return CompiledAction(index, cls.name, destination, renderers, uses_captured)


def _uses_captured(value: Any) -> bool:
    """Whether any template in `value` (a rule's fields) names `captured`."""
    if isinstance(value, str):
        return bool(_USES_CAPTURED.search(value))
    if isinstance(value, dict):
        return any(_uses_captured(v) for v in value.values())
    if isinstance(value, list):
        return any(_uses_captured(v) for v in value)
    return False


def _destination_templates(cls: type[Action], destination: Mapping[str, Any],
                           given: Mapping[str, Renderer]) -> dict[str, Renderer]:
    """Renderers for the destination keys the action type declares templated (unless the rule set them)."""
    found = {}
    for key in cls.destination_templates:
        value = destination.get(key)
        if isinstance(value, str) and key not in given:
            try:
                found[key] = _text(value, key, None)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
    return found
