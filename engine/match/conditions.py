"""Conditions compiled from a rule's `when:`: leaves (one subject, one operator) and the combinators
all / any / not. `test(ctx)` returns None when the condition holds, else a Miss naming the first failed
condition and the value found there, which is what `idhooks test` and the decision records show.
"""

from __future__ import annotations

import json
import weakref
from operator import attrgetter
from typing import Any, Callable, Iterator

from engine.config.schema import Report, line_of, suggest
from engine.match.context import EvalContext, claim_uri
from engine.match.enrich import GEO_FIELDS
from engine.match.operators import NEGATED, OPERATORS, ORDER_OPERATORS, Predicate, exact_strings, predicate
from engine.match.paths import compile_path
from engine.config.yamlsource import LineDict

SHORTCUTS = ("initiatorType", "action", "credentialType", "initiatorIpAddress")
"""Top-level body fields usable directly as `when` keys: a value means equals, a list means in."""
SUBJECTS = ("path", "claim", "envelope")
COMBINATORS = ("all", "any", "not")

Subject = tuple[str, Callable[[EvalContext], Any], Callable[[Any], list[Any]]]
"""(text for messages, the event document it reads: body/envelope/claims, the lookup in that document)"""
Miss = tuple[str, Any]
"""(failed, actual): the first failed condition and the value found there. A plain tuple because an event
misses most of its candidate rules, and a tuple costs far less to build than an object."""
Test = Callable[[EvalContext], "Miss | None"]
"""A compiled condition: None when it holds, else the Miss."""


def _actual(found: list[Any]) -> Any:
    if not found:
        return None
    return found[0] if len(found) == 1 else found


def _any_value(test: Predicate, exact: frozenset[str] | None = None) -> Callable[[list[Any]], bool]:
    """A path that yields several values (or a list) holds if any value holds. With `exact` (see
    operators.exact_strings) scalar values are decided by one set operation in C, no call per value."""
    def holds(found: list[Any]) -> bool:
        for value in found:
            if type(value) is list:
                for item in value:
                    if test(item):
                        return True
            elif test(value):
                return True
        return False

    if exact is None:
        return holds

    def holds_exact(found: list[Any]) -> bool:
        try:
            return not exact.isdisjoint(found)
        except TypeError:  # a list or object among the values: the general loop
            return holds(found)

    return holds_exact


class Condition:
    """A compiled condition. `test` is a closure built once at load (no per-call dispatch on the
    condition's kind): None when the condition holds, else the first failed condition and the value
    found there."""

    where: str = "when"
    test: Test

    def leaves(self) -> Iterator[Leaf]:
        """Every leaf inside, in order (for condition coverage)."""
        raise NotImplementedError


class Leaf(Condition):
    """`subject operator operand`, e.g. `$.application.name in ["Console"]`."""

    def __init__(self, where: str, line: int, subject: Subject, operator: str, operand: Any, fold: bool) -> None:
        text, self._document, self._find = subject
        self.where, self.line = where, line
        self.label = f"{where}: {text} {operator} {json.dumps(operand, ensure_ascii=False)}" \
            + (" (ignore_case)" if fold else "")
        self.holds = self._holds(operator, operand, fold)
        self.test = self._compile(text)

    @staticmethod
    def _holds(operator: str, operand: Any, fold: bool) -> Callable[[list[Any]], bool]:
        if operator == "exists":
            if not isinstance(operand, bool):
                raise ValueError("expected true or false")
            return (lambda found: bool(found)) if operand else (lambda found: not found)
        test = predicate(operator, operand, fold)
        if NEGATED.get(operator, operator) == "contains":  # sees whole lists: element membership
            def holds(found: list[Any]) -> bool:
                return any(map(test, found))
        else:
            holds = _any_value(test, exact_strings(operator, operand, fold))
        if operator in NEGATED:
            return lambda found: bool(found) and not holds(found)
        return holds

    def _compile(self, key: str) -> Test:
        """The leaf's test. Values are looked up once per event and subject (`key`), however many rules
        read them: rules of one event type mostly test the same few fields. The closure holds the leaf
        (coverage's key) by weak reference: a cycle would keep every replaced rule set alive until a full
        garbage collection."""
        document, find, holds, label, leaf = self._document, self._find, self.holds, self.label, weakref.ref(self)

        def lookup(ctx: EvalContext) -> list[Any]:
            found = ctx.found.get(key)
            if found is None:
                found = ctx.found[key] = find(document(ctx))
            return found

        def test(ctx: EvalContext) -> Miss | None:
            found = ctx.found.get(key)  # lookup() inlined: this is the hot path of matching
            if found is None:
                found = ctx.found[key] = find(document(ctx))
            held = holds(found)
            if ctx.seen is not None:
                ctx.seen.setdefault(leaf(), set()).add(held)
            if held:
                return None
            return label, (found[0] if len(found) == 1 else found or None)  # _actual(), inlined

        self.lookup = lookup
        return test

    def leaves(self) -> Iterator[Leaf]:
        yield self


class All(Condition):
    def __init__(self, where: str, parts: list[Condition]) -> None:
        self.where, self.parts = where, parts
        self.test = self._compile()

    def _flat(self) -> tuple[Test, ...]:
        """The tests of the parts in order, nested `all`s flattened (same first miss, fewer calls)."""
        return tuple(test for part in self.parts
                     for test in (part._flat() if type(part) is All else (part.test,)))  # type: ignore[attr-defined]  # type() is All

    def _compile(self) -> Test:
        tests = self._flat()
        if len(tests) == 1:
            return tests[0]

        def test(ctx: EvalContext) -> Miss | None:
            for part in tests:
                miss = part(ctx)
                if miss is not None:
                    return miss
            return None

        return test

    def leaves(self) -> Iterator[Leaf]:
        for part in self.parts:
            yield from part.leaves()


class AnyOf(All):
    def _compile(self) -> Test:
        tests = tuple(part.test for part in self.parts)
        prefix = f"{self.where}: none of {len(tests)} conditions held (first: "

        def test(ctx: EvalContext) -> Miss | None:
            first: Miss | None = None
            for part in tests:
                miss = part(ctx)
                if miss is None:
                    return None
                first = first or miss
            assert first is not None  # parts is never empty (checked at load)
            return prefix + first[0] + ")", first[1]

        return test


class Not(Condition):
    def __init__(self, where: str, inner: Condition) -> None:
        self.where, self.inner = where, inner
        self.test = self._compile()

    def _compile(self) -> Test:
        inner, inner_test = self.inner, self.inner.test
        if isinstance(inner, Leaf):
            failed, lookup = f"{self.where}: expected this not to hold: {inner.label}", inner.lookup
        else:
            failed, lookup = f"{self.where}: the negated condition held", lambda ctx: []

        def test(ctx: EvalContext) -> Miss | None:
            return None if inner_test(ctx) is not None else (failed, _actual(lookup(ctx)))

        return test

    def leaves(self) -> Iterator[Leaf]:
        return self.inner.leaves()


# -- compiling -------------------------------------------------------------------------------------------
_BODY = attrgetter("body")
GEO_PREFIX = "geo."


def geo_lookup(name: str) -> Callable[[dict[str, Any]], list[Any]]:
    """The lookup of an enrichment name (`geo.country`) in EvalContext.geo; an empty value is missing."""
    field = name[len(GEO_PREFIX):]
    if field not in GEO_FIELDS:
        raise ValueError(f"unknown enrichment '{name}'{suggest(name, [GEO_PREFIX + f for f in GEO_FIELDS])}; "
                         f"expected one of: {', '.join(GEO_PREFIX + f for f in GEO_FIELDS)}")
    return lambda geo: [] if geo.get(field) in (None, "") else [geo[field]]


def _subject(key: str, value: Any) -> Subject:
    """The leaf's subject: (text, which document of the event, lookup in it); ValueError when invalid."""
    if key == "claim":
        if not isinstance(value, str) or not value:
            raise ValueError("expected a claim name like username or a claim URI")
        uri = claim_uri(value)
        return f"claim {value}", attrgetter("claims"), lambda claims: [] if claims.get(uri) is None else [claims[uri]]
    if key == "path" and isinstance(value, str) and value.startswith(GEO_PREFIX):
        return value, attrgetter("geo"), geo_lookup(value)
    compiled = compile_path(value)
    if key == "envelope":
        return f"envelope {value}", attrgetter("envelope.claims"), compiled
    return str(value), _BODY, compiled


def subject_lookup(key: str, value: Any) -> Callable[[EvalContext], list[Any]]:
    """The lookup of a `path` / `claim` / `envelope` subject; also compiles stateful rules' group_by keys."""
    _, document, find = _subject(key, value)
    return lambda ctx: find(document(ctx))


def _operator_of(node: dict, where: str, allowed_extra: tuple[str, ...], report: Report) -> str | None:
    unknown = [k for k in node if k not in OPERATORS and k not in allowed_extra]
    for key in unknown:
        report(line_of(node, key), where, f"unknown operator '{key}'{suggest(str(key), OPERATORS)}; "
                                        f"expected one of: {', '.join(OPERATORS)}")
    operators = [k for k in node if k in OPERATORS]
    if len(operators) > 1:
        report(line_of(node), where, f"give exactly one operator, got {' and '.join(operators)}")
    elif not operators and not unknown:
        report(line_of(node), where, f"missing operator: give one of {', '.join(OPERATORS)}")
    return operators[0] if len(operators) == 1 and not unknown else None


def _leaf(node: dict, where: str, subject: Subject | None, report: Report) -> Condition | None:
    extra = ("ignore_case",) + (SUBJECTS if subject is None else ())
    operator = _operator_of(node, where, extra, report)
    fold = node.get("ignore_case", False)
    if not isinstance(fold, bool):
        report(line_of(node, "ignore_case"), f"{where}.ignore_case", "expected true or false")
        return None
    if fold and (operator in ORDER_OPERATORS or operator == "exists"):
        report(line_of(node, "ignore_case"), f"{where}.ignore_case", f"ignore_case does not apply to {operator}")
        return None
    if subject is None:
        key = next(k for k in SUBJECTS if k in node)
        try:
            subject = _subject(key, node[key])
        except ValueError as exc:
            report(line_of(node, key), f"{where}.{key}", str(exc))
            return None
    if operator is None:
        return None
    try:
        return Leaf(where, line_of(node), subject, operator, node[operator], fold)
    except ValueError as exc:
        report(line_of(node, operator), f"{where}.{operator}", str(exc))
        return None


def _shortcut(node: dict, key: str, where: str, report: Report) -> Condition | None:
    value = node[key]
    subject = (f"$.{key}", _BODY, compile_path(f"$.{key}"))
    if isinstance(value, dict):
        return _leaf(value, where, subject, report)
    operator = "in" if isinstance(value, list) else "equals"
    fake = LineDict({operator: value})
    fake.line = line_of(node, key)
    return _leaf(fake, where, subject, report)


def _items(node: dict, key: str, where: str, report: Report) -> list[Condition] | None:
    items = node[key]
    if not isinstance(items, list) or not items:
        report(line_of(node, key), where, "expected a non-empty list of conditions")
        return None
    parts = [compile_condition(item, f"{where}[{i}]", report) for i, item in enumerate(items)]
    return None if any(p is None for p in parts) else parts


def _combinator(node: dict, key: str, where: str, report: Report) -> Condition | None:
    if key == "not":
        inner = compile_condition(node[key], where, report)
        return None if inner is None else Not(where, inner)
    parts = _items(node, key, where, report)
    if parts is None:
        return None
    return All(where, parts) if key == "all" else AnyOf(where, parts)


def compile_condition(node: Any, where: str, report: Report) -> Condition | None:
    """Compile one mapping: a leaf (path/claim/envelope + operator) or keys that must all hold
    (all, any, not and the body shortcuts). Problems go to `report`; None when anything was wrong."""
    if not isinstance(node, dict) or not node:
        report(line_of(node), where, "expected a mapping of conditions (path/claim/envelope with an operator, "
                                   "all, any, not, or " + ", ".join(SHORTCUTS) + ")")
        return None
    subjects = [k for k in SUBJECTS if k in node]
    if len(subjects) > 1:
        report(line_of(node), where, f"give one of path, claim or envelope, got {' and '.join(subjects)}")
        return None
    if subjects:
        return _leaf(node, where, None, report)
    parts: list[Condition | None] = []
    allowed = COMBINATORS + SHORTCUTS + SUBJECTS
    for key in node:
        sub = f"{where}.{key}"
        if key in COMBINATORS:
            parts.append(_combinator(node, key, sub, report))
        elif key in SHORTCUTS:
            parts.append(_shortcut(node, key, sub, report))
        else:
            parts.append(None)
            report(line_of(node, key), where, f"unknown condition key '{key}'{suggest(str(key), allowed)}; "
                                            f"expected one of: {', '.join(allowed)}")
    if any(p is None for p in parts):
        return None
    return parts[0] if len(parts) == 1 else All(where, parts)  # type: ignore[arg-type]  # no None: checked above
