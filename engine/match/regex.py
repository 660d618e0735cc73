"""Regular expressions for the `matches` operator, in linear time.

Event data is attacker-chosen, so a pattern like `^(a+)+$` must not be able to stall the processor: Python's
backtracking `re` takes exponential time on it, RE2 (google-re2) never more than linear time in the input.
RE2 has no backreferences or lookaround; a pattern using them is a load error that names the construct.
A pattern is first checked with Python's `re`, whose syntax errors say where the mistake is.
"""

from __future__ import annotations

import re
from typing import Callable

import re2

_UNSUPPORTED = (
    (re.compile(r"\\[1-9]|\(\?P=|\\g<|\\k<"), "a backreference"),
    (re.compile(r"\(\?<[=!]"), "a lookbehind ((?<=...) or (?<!...))"),
    (re.compile(r"\(\?[=!]"), "a lookahead ((?=...) or (?!...))"),
    (re.compile(r"\(\?>"), "an atomic group ((?>...))"),
    (re.compile(r"(?<!\\)(?:[*+?}])[+]"), "a possessive quantifier"),
    (re.compile(r"\(\?\("), "a conditional group ((?(...)...))"),
)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def compile_search(pattern: str, ignore_case: bool) -> Callable[[str], bool]:
    """A function telling whether `pattern` is found in a string; ValueError naming what is wrong."""
    try:
        re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        raise ValueError(_unsupported(pattern, exc)) from None

    def search(value: str) -> bool:
        try:
            return compiled.search(value) is not None
        except UnicodeEncodeError:  # a lone surrogate: RE2 reads UTF-8, so it becomes U+FFFD
            return compiled.search(_LONE_SURROGATE.sub("\ufffd", value)) is not None

    return search


def _unsupported(pattern: str, exc: Exception) -> str:
    detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
    for finder, construct in _UNSUPPORTED:
        if finder.search(pattern):
            return (f"{pattern!r} uses {construct}, which the linear-time regex engine (RE2) cannot run; "
                    f"rewrite the pattern without it ({detail})")
    return f"{pattern!r} cannot be run by the linear-time regex engine (RE2): {detail}"
