"""JSONPath lookups compiled once at load time.

Plain dotted paths (`$.a.b`, `$.a[0].b`, `$.a['x-y']`, `$.a[*].b`) compile to direct dict/list lookups: jsonpath-ng
costs microseconds per lookup, a direct lookup a fraction of that, and these are nearly every path in real
rules. Anything else (`..`, slices, filters) is parsed once with jsonpath-ng's extended parser.
A lookup returns the list of values found: [] when the field is missing or null (never an exception);
null counts as missing because the hub omits null fields anyway.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from jsonpath_ng.ext import parse as jsonpath_parse

Lookup = Callable[[Any], list[Any]]

_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+|\*)\]|\['([^'\]]*)'\]|\[\"([^\"\]]*)\"\]")
ALL = object()
"""The `[*]` step: every element of a list."""
MISSING = object()
"""What a step yields when the key or index is not there."""


def plain_steps(expression: str) -> list[str | int] | None:
    """The keys/indexes of a plain dotted path, or None when it needs the full JSONPath engine."""
    if not expression.startswith("$"):
        return None
    steps: list[str | int] = []
    position = 1
    while position < len(expression):
        match = _STEP.match(expression, position)
        if not match:
            return None
        name, index, quoted, double = match.groups()
        if index == "*":
            steps.append(ALL)  # type: ignore[arg-type]  # the wildcard sentinel among names and indexes
        else:
            steps.append(int(index) if index is not None else (name or quoted or double or ""))
        position = match.end()
    return steps


def step_into(value: Any, step: str | int) -> Any:
    """One key or index of a plain path; MISSING when it is not there."""
    if isinstance(step, int):
        return value[step] if isinstance(value, list) and -len(value) <= step < len(value) else MISSING
    return value.get(step, MISSING) if isinstance(value, dict) else MISSING


def _direct(steps: list[str | int]) -> Lookup:
    """The hot path of matching, hence inlined rather than calling step_into()."""
    keyed = tuple((isinstance(step, int), step) for step in steps)

    def lookup(document: Any) -> list[Any]:
        value = document
        for is_index, step in keyed:
            if is_index:
                if type(value) is not list or not -len(value) <= step < len(value):
                    return []
                value = value[step]
            elif type(value) is dict:
                value = value.get(step, MISSING)
                if value is MISSING:
                    return []
            else:
                return []
        return [] if value is None else [value]

    return lookup


def _fan_out(steps: list[Any]) -> Lookup:
    """A plain path with `[*]` steps: every list element is followed."""
    def lookup(document: Any) -> list[Any]:
        values = [document]
        for step in steps:
            if step is ALL:
                values = [item for value in values if isinstance(value, list) for item in value]
            else:
                values = [v for v in (step_into(value, step) for value in values) if v is not MISSING]
        return [v for v in values if v is not None]

    return lookup


def compile_path(expression: str) -> Lookup:
    """A lookup function for `expression`; raises ValueError with the parser's reason when invalid."""
    if not isinstance(expression, str) or not expression.startswith("$"):
        raise ValueError(f"expected a JSONPath starting with '$', got {expression!r}")
    steps = plain_steps(expression)
    if steps is not None:
        return _fan_out(steps) if ALL in steps else _direct(steps)
    try:
        parsed = jsonpath_parse(expression)
    except Exception as exc:  # noqa: BLE001 - jsonpath-ng raises its own errors and bare Exceptions
        raise ValueError(f"invalid JSONPath {expression!r}: {exc}") from None
    return lambda document: [m.value for m in parsed.find(document) if m.value is not None]
