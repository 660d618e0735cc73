"""`capture:` on an http action: values taken from a JSON answer by JSONPath (e.g. `{scim_id: $.id}`), so a
later action for the same `ordered_by` key can name the downstream id (`{{ captured.scim_id }}`).

Paths are checked when rules load; at send time a path that finds nothing captures nothing (a 409 answer,
for instance, carries no new id), and the worker stores whatever was found under the job's key. A value is
kept only when its JSON form is at most MAX_VALUE_CHARS, so an answer cannot grow the store.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Mapping

from jsonpath_ng import JSONPath
from jsonpath_ng.ext import parse

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VALUE_CHARS = 4096
MAX_CAPTURES = 16


@lru_cache(maxsize=1024)
def compiled(path: str) -> JSONPath:
    return parse(path)


def capture_problems(fields: Mapping[str, Any]) -> list[str]:
    """Load-time problems of a rule's `capture:` (and the `ordered_by` it needs)."""
    capture = fields.get("capture")
    if capture is None:
        return []
    if not isinstance(capture, Mapping) or not capture or len(capture) > MAX_CAPTURES:
        return [f"capture: expected a mapping of 1-{MAX_CAPTURES} names to JSONPaths, like {{scim_id: $.id}}"]
    problems = []
    if "ordered_by" not in fields:
        problems.append("capture: needs ordered_by (captured values are stored under that key, "
                        "e.g. ordered_by: '{{ user_id }}')")
    for name, path in capture.items():
        if not isinstance(name, str) or not NAME.match(name):
            problems.append(f"capture.{name}: a name is letters, digits and '_' (not first), at most 64")
            continue
        try:
            if not isinstance(path, str):
                raise TypeError
            compiled(path)
        except Exception as exc:  # noqa: BLE001 - jsonpath-ng raises its own errors and plain Exception
            problems.append(f"capture.{name}: not a JSONPath: {path!r} ({type(exc).__name__})")
    return problems


def captured_values(capture: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Name -> the first value each path finds in `body` (JSON); names whose path finds nothing are left out."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes: nothing to keep
        return {}
    found: dict[str, Any] = {}
    for name, path in capture.items():
        matches = compiled(path).find(document)
        if matches and len(json.dumps(matches[0].value, default=str)) <= MAX_VALUE_CHARS:
            found[name] = matches[0].value
    return found
