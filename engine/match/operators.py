"""The leaf operators: each turns a rule's operand into a predicate on one event value, checked at load.

Type rules (documented in docs/rules.md): values compare only with values of the same kind, so the string
"3" never equals the number 3 and `true` never equals 1. The ordering operators (gt/gte/lt/lte) take a
number and also accept event strings that are decimal numbers, because the hub sends some numbers as
strings (`accessToken.iat`). `ignore_case` applies to the string operators only.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from engine.match.regex import compile_search

Predicate = Callable[[Any], bool]

STRING_OPERATORS = ("equals", "not_equals", "in", "not_in", "contains", "not_contains", "starts_with",
                    "ends_with", "matches")
ORDER_OPERATORS = ("gt", "gte", "lt", "lte")
OPERATORS = STRING_OPERATORS + ("exists",) + ORDER_OPERATORS
NEGATED = {"not_equals": "equals", "not_in": "in", "not_contains": "contains"}
"""A negated operator holds when the field is present and its positive form holds for no value."""

_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")
_ORDER = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b,
          "lte": lambda a, b: a <= b}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else "other"


def _key(value: Any, fold: bool) -> tuple[str, Any]:
    """What equality compares: the kind and the (case-folded) value."""
    kind = _kind(value)
    return kind, (value.casefold() if fold and kind == "string" else value)


def _is_scalar(value: Any) -> bool:
    return _kind(value) != "other"


def _membership(values: list[Any], fold: bool) -> Predicate:
    """value in `values`, kind by kind (so True is not 1 and "3" is not 3), built for speed: this is
    the most common test of all."""
    strings = frozenset(v.casefold() if fold else v for v in values if _kind(v) == "string")
    numbers = frozenset(v for v in values if _kind(v) == "number")
    bools = frozenset(v for v in values if _kind(v) == "bool")

    def predicate(value: Any) -> bool:
        kind = type(value)
        if kind is str:
            return (value.casefold() if fold else value) in strings
        if kind is bool:
            return value in bools
        return (kind is int or kind is float) and value in numbers

    return predicate


def _equals(operand: Any, fold: bool) -> Predicate:
    if not _is_scalar(operand):
        raise ValueError("expected a string, number or true/false")
    return _membership([operand], fold)


def _in(operand: Any, fold: bool) -> Predicate:
    if not isinstance(operand, list) or not operand or not all(_is_scalar(v) for v in operand):
        raise ValueError("expected a non-empty list of strings, numbers or true/false")
    return _membership(operand, fold)


def _contains(operand: Any, fold: bool) -> Predicate:
    """A string contains a substring; a list (multi-valued claim) contains an element."""
    if not _is_scalar(operand):
        raise ValueError("expected a string, number or true/false")
    wanted = _key(operand, fold)
    needle = wanted[1] if wanted[0] == "string" else None

    def predicate(value: Any) -> bool:
        if isinstance(value, list):
            return any(_is_scalar(v) and _key(v, fold) == wanted for v in value)
        if isinstance(value, str) and needle is not None:
            return needle in (value.casefold() if fold else value)
        return False

    return predicate


def _affix(operand: Any, fold: bool, method: str) -> Predicate:
    if not isinstance(operand, str):
        raise ValueError("expected a string")
    wanted = operand.casefold() if fold else operand
    check = getattr(str, method)
    return lambda value: isinstance(value, str) and check(value.casefold() if fold else value, wanted)


def _matches(operand: Any, fold: bool) -> Predicate:
    """RE2, not `re`: linear time whatever the event holds (engine/match/regex.py)."""
    if not isinstance(operand, str):
        raise ValueError("expected a regular expression string")
    search = compile_search(operand, fold)
    return lambda value: isinstance(value, str) and search(value)


def _number(value: Any) -> float | None:
    kind = _kind(value)
    if kind == "number":
        return value
    if kind == "string" and _NUMBER.match(value):
        return float(value)
    return None


def _order(operand: Any, compare: Callable[[Any, Any], bool]) -> Predicate:
    if _kind(operand) != "number":
        raise ValueError("expected a number")

    def predicate(value: Any) -> bool:
        number = _number(value)
        return number is not None and compare(number, operand)

    return predicate


def predicate(operator: str, operand: Any, fold: bool) -> Predicate:
    """The positive predicate of `operator` (negations are applied by the caller); ValueError when the
    operand does not fit the operator."""
    base = NEGATED.get(operator, operator)
    if base == "equals":
        return _equals(operand, fold)
    if base == "in":
        return _in(operand, fold)
    if base == "contains":
        return _contains(operand, fold)
    if base in ("starts_with", "ends_with"):
        return _affix(operand, fold, "startswith" if base == "starts_with" else "endswith")
    if base == "matches":
        return _matches(operand, fold)
    return _order(operand, _ORDER[base])


def exact_strings(operator: str, operand: Any, fold: bool) -> frozenset[str] | None:
    """The operand set of equals/in (or their negations) when it holds only strings and case matters:
    then a hashable event value holds exactly when it is in the set (a number or true never equals a
    string), which conditions check with one set operation. None when that does not apply."""
    if fold or NEGATED.get(operator, operator) not in ("equals", "in"):
        return None
    values = operand if isinstance(operand, list) else [operand]
    return frozenset(values) if all(type(value) is str for value in values) else None
