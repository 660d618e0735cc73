"""JSONPath lookups compiled once at load time.

Plain dotted paths (`$.a.b`, `$.a[0].b`, `$.a['x-y']`) compile to direct dict/list lookups: jsonpath-ng
costs microseconds per lookup, a direct lookup a fraction of that, and these are nearly every path in real
rules. Anything else (`[*]`, `..`, filters) is parsed once with jsonpath-ng's extended parser.
A lookup returns the list of values found: [] when the field is missing or null (never an exception);
null counts as missing because the hub omits null fields anyway.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from jsonpath_ng.ext import parse as jsonpath_parse

Lookup = Callable[[Any], list[Any]]

_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\['([^'\]]*)'\]|\[\"([^\"\]]*)\"\]")
_MISSING = object()


def _steps(expression: str) -> list[str | int] | None:
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
        steps.append(int(index) if index is not None else (name or quoted or double or ""))
        position = match.end()
    return steps


def _direct(steps: list[str | int]) -> Lookup:
    def lookup(document: Any) -> list[Any]:
        value = document
        for step in steps:
            if isinstance(step, int):
                value = value[step] if isinstance(value, list) and step < len(value) else _MISSING
            else:
                value = value.get(step, _MISSING) if isinstance(value, dict) else _MISSING
            if value is _MISSING:
                return []
        return [] if value is None else [value]

    return lookup


def compile_path(expression: str) -> Lookup:
    """A lookup function for `expression`; raises ValueError with the parser's reason when invalid."""
    if not isinstance(expression, str) or not expression.startswith("$"):
        raise ValueError(f"expected a JSONPath starting with '$', got {expression!r}")
    steps = _steps(expression)
    if steps is not None:
        return _direct(steps)
    try:
        parsed = jsonpath_parse(expression)
    except Exception as exc:  # noqa: BLE001 - jsonpath-ng raises its own errors and bare Exceptions
        raise ValueError(f"invalid JSONPath {expression!r}: {exc}") from None
    return lambda document: [m.value for m in parsed.find(document) if m.value is not None]
