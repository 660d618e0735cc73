"""The `threshold`, `suppress` and `digest` keys: what loads, and the exact message for each mistake."""

from __future__ import annotations

from typing import Any, Mapping

from engine.config.schema import line_of
from engine.config.yamlsource import load_yaml_text
from engine.match.stateful.specs import (STATEFUL_KEYS, Digest, StatefulSpec, Suppress, Threshold, check_combination,
                                         parse_digest, parse_suppress, parse_threshold)


def parse_stateful(rule: Mapping[str, Any]) -> tuple[StatefulSpec | None, list[tuple[int, str]]]:
    """A whole rule's stateful keys (None when it has none) and every problem, as (line, "where: what")."""
    problems: list[tuple[int, str]] = []

    def report(line: int, where: str, message: str) -> None:
        problems.append((line, f"{where}: {message}"))

    present = [key for key in STATEFUL_KEYS if key in rule]
    if not present:
        return None, []
    parsers = {"threshold": parse_threshold, "suppress": parse_suppress, "digest": parse_digest}
    values = {key: parsers[key](rule[key], line_of(rule, key), report) for key in present}
    check_combination(present, line_of(rule, "digest"), report)
    return StatefulSpec(**values), problems


def parse(text: str) -> tuple[StatefulSpec | None, list[tuple[int, str]]]:
    return parse_stateful(load_yaml_text(text, "rules/x.yaml"))


def test_the_issue_examples_load() -> None:
    spec, problems = parse("""
id: password-spray-ip
threshold: {distinct: claims.username, count: 10, within: 5m, group_by: [$.initiatorIpAddress]}
suppress: {for: 1h}
""")
    assert problems == []
    assert spec == StatefulSpec(threshold=Threshold(count=10, within=300, group_by=("$.initiatorIpAddress",),
                                                    distinct="claims.username"), suppress=Suppress(for_=3600))
    assert spec.group_by == ("$.initiatorIpAddress",)
    digest, problems = parse("digest: {every: 1h, max_items: 200}")
    assert problems == [] and digest == StatefulSpec(digest=Digest(every=3600, max_items=200))


def test_a_rule_without_stateful_keys_has_no_spec() -> None:
    assert parse("id: plain\nevent: login.loginFailed") == (None, [])


def test_every_mistake_is_reported_with_its_line_and_a_suggestion() -> None:
    _, problems = parse("""
id: brute
threshold:
  count: 0
  withn: 10m
  group_by: []
suppress: {for: soon}
""")
    assert problems == [
        (5, "threshold.withn: unknown key (did you mean 'within'?); expected one of: count, within, group_by, "
            "distinct, late, max_groups"),
        (4, "threshold.count: expected a whole number from 1 to 10000, got 0"),
        (3, "threshold: missing 'within' (a duration like 30s, 10m, 1h)"),
        (6, "threshold.group_by: expected a path or a list of paths like [claims.username], got []"),
        (7, "suppress.for: expected a duration like 30s, 10m, 1h or 7d, got 'soon'"),
    ]


def test_wrong_shapes_and_combinations_are_errors() -> None:
    _, problems = parse("threshold: 5\n")
    assert problems == [(1, "threshold: expected a mapping with keys count, within, group_by, distinct, late, "
                            "max_groups, got 5")]
    _, problems = parse("digest: {every: 0.5s}\nsuppress: {for: 1m}\n")
    assert problems == [(1, "digest.every: must be at least 1s, got '0.5s'"),
                        (1, "digest: cannot be combined with 'suppress': a digest already sends one message per period")]
