"""Rule unit tests: `rules/tests/*.yaml` next to the rules, run by `idhooks test` with no event.

    tests:
      - name: failed login to the portal alerts
        event: login.loginFailed          # a catalog alias or alias/variant (its sample), or an inline SET
        file: samples/x.json              # or a SET JSON file, relative to the test file
        set: {application.name: Console}  # body overrides by dotted path; null removes the field
        webhook: asgardeo                 # default: the first configured webhook
        match: [failed-login-alert]       # exactly the rules that must match (any other match fails)
        rendered:                         # optional: expected rendered fields, per rule, per action
          failed-login-alert:
            - {message: "failed login for jane.doe@example.com"}

A test may instead give `sequence:` (events in arrival order with their times), `tick:` and `fires:`
for stateful rules; see engine/offline/sequences.py. Every test runs with a fresh throw-away store.

Running them also measures condition coverage: which conditions no test ever made hold, or fail.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from engine import catalog
from engine.config.schema import suggest
from engine.config.durations import parse_duration
from engine.verify.envelope import Envelope, envelope_from_claims
from engine.errors import ConfigError, PayloadError
from engine.match.conditions import Leaf, line_of
from engine.match.enrich import Pinned, bundled
from engine.match.loader import RULE_FILE_SUFFIXES, display_path
from engine.match.ruleset import Decision, RuleSet
from engine.offline.sequences import ScratchStore, Step, read_step, run_sequence, scratch_rules
from engine.config.yamlsource import load_yaml_file

TEST_KEYS = ("name", "event", "file", "set", "webhook", "match", "rendered", "sequence", "tick", "fires", "geo")


@dataclass
class RuleTest:
    name: str
    source: str
    line: int
    event: dict[str, Any]
    webhook: str | None
    match: list[str]
    rendered: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    steps: list[Step] | None = None  # a `sequence:` test
    tick: float | None = None
    fires: dict[str, int] = field(default_factory=dict)
    geo: dict[str, dict[str, Any]] = field(default_factory=dict)  # IP enrichment pinned per address


@dataclass
class TestResult:
    test: RuleTest
    failures: list[str]


@dataclass
class TestReport:
    results: list[TestResult]
    uncovered: list[str]  # "file:line: rule 'x': when.all[0]: ...: never held"
    covered: int
    conditions: int

    @property
    def failed(self) -> list[TestResult]:
        return [r for r in self.results if r.failures]


def test_files(rule_paths: Sequence[Path]) -> list[Path]:
    """`tests/*.yaml` inside every rules folder."""
    found: list[Path] = []
    for path in map(Path, rule_paths):
        folder = path / "tests"
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.suffix in RULE_FILE_SUFFIXES and p.is_file())
    return found


def apply_overrides(body: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Set dotted paths in `body` (creating mappings on the way); a None value removes the field."""
    for dotted, value in overrides.items():
        *parents, last = str(dotted).split(".")
        node = body
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value


def _base_event(node: dict, base_dir: Path) -> dict[str, Any]:
    """The SET a test starts from; ValueError naming what is wrong."""
    if "file" in node:
        path = base_dir / str(node["file"])
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"file: cannot read a JSON event from {display_path(path)}: {exc}") from None
    event = node.get("event")
    if isinstance(event, dict):
        return json.loads(json.dumps(event))
    names = catalog.sample_names()
    if event not in names:
        raise ValueError(f"event: unknown event alias {event!r}{suggest(str(event), names)}")
    return catalog.sample(event)  # its fixed jti and iat keep rendered text predictable


def _shape_problems(node: dict) -> list[str]:
    """What is wrong with a test's keys, apart from its event."""
    found = [f"{key}: unknown key{suggest(str(key), TEST_KEYS)}" for key in node if key not in TEST_KEYS]
    if sum(key in node for key in ("event", "file", "sequence")) != 1:
        found.append("give exactly one of event (alias or inline SET), file or sequence")
    match = node.get("match")
    if not isinstance(match, list) or not all(isinstance(m, str) for m in match):
        found.append("match: expected a list of rule ids (empty: no rule may match)")
    for key in ("set", "rendered"):
        if not isinstance(node.get(key, {}), dict):
            found.append(f"{key}: expected a mapping")
    return found


def _read_geo(node: dict) -> dict[str, dict[str, Any]]:
    """A test's `geo:` (address -> enrichment fields); ValueError naming what is wrong."""
    table = node.get("geo") or {}
    if not isinstance(table, dict):
        raise ValueError("geo: expected addresses with their enrichment, like {203.0.113.7: {country: NL, asn: 64500}}")
    kinds = {"country": str, "country_name": str, "asn": int, "as_org": str}
    for address, fields in table.items():
        if not isinstance(fields, dict):
            raise ValueError(f"geo.{address}: expected a mapping of {', '.join(kinds)}")
        for key, value in fields.items():
            if key not in kinds:
                raise ValueError(f"geo.{address}.{key}: unknown key{suggest(str(key), list(kinds))}; "
                                 f"expected one of: {', '.join(kinds)}")
            if not isinstance(value, kinds[key]) or isinstance(value, bool):
                raise ValueError(f"geo.{address}.{key}: expected {'a number' if kinds[key] is int else 'text'}, "
                                 f"got {value!r}")
    return {str(address): dict(fields) for address, fields in table.items()}


def _test_event(node: dict, base_dir: Path) -> dict[str, Any]:
    """The test's SET with its `set:` overrides applied; ValueError naming what is wrong."""
    event = _base_event(node, base_dir)
    bodies = event.get("events") if isinstance(event, dict) else None
    body = next(iter(bodies.values()), None) if isinstance(bodies, dict) and bodies else None
    if node.get("set") and isinstance(body, dict):
        apply_overrides(body, node["set"])
    return event


def _read_sequence(node: dict, base_dir: Path) -> tuple[list[Step], float | None, dict[str, int]]:
    """A `sequence:` test's steps, tick and expected firing counts; ValueError naming what is wrong."""
    steps = node["sequence"]
    if not isinstance(steps, list) or not steps:
        raise ValueError("sequence: expected a list of events like {event: login.loginFailed, at: 1m}")
    fires = node.get("fires") or {}
    if not isinstance(fires, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in fires.values()):
        raise ValueError("fires: expected rule ids with how many times each fires, like {brute-force-user: 1}")
    try:
        tick = parse_duration(node["tick"]) if "tick" in node else None
    except ValueError as exc:
        raise ValueError(f"tick: {exc}") from None
    return [read_step(step, i, lambda n: _test_event(n, base_dir)) for i, step in enumerate(steps)], tick, fires


def _read_test(node: Any, index: int, source: str, base_dir: Path, problems: list[str]) -> RuleTest | None:
    if not isinstance(node, dict) or not isinstance(node.get("name"), str):
        problems.append(f"{source}:{line_of(node)}: tests[{index}]: expected a mapping with a name")
        return None
    prefix = f"{source}:{line_of(node)}: test '{node['name']}'"
    found = _shape_problems(node)
    event: dict[str, Any] = {}
    steps, tick, fires, geo = None, None, {}, {}
    try:
        geo = _read_geo(node)
        if "sequence" in node:
            steps, tick, fires = _read_sequence(node, base_dir)
        elif "event" in node or "file" in node:
            event = _test_event(node, base_dir)
    except ValueError as exc:
        found.append(str(exc))
    problems += [f"{prefix}: {text}" for text in found]
    if found:
        return None
    return RuleTest(node["name"], source, line_of(node), event, node.get("webhook"), list(node["match"]),
                    dict(node.get("rendered") or {}), steps, tick, dict(fires), geo)


def load_rule_tests(files: Sequence[Path]) -> list[RuleTest]:
    """Every test of every file; ConfigError listing every problem."""
    problems: list[str] = []
    tests: list[RuleTest] = []
    for path in files:
        source = display_path(path)
        try:
            raw = load_yaml_file(path, source)
        except ConfigError as exc:
            problems += exc.problems
            continue
        items = raw.get("tests") if isinstance(raw, dict) else None
        if not isinstance(items, list):
            problems.append(f"{source}:{line_of(raw)}: expected a mapping with `tests:` (a list of tests)")
            continue
        found = [_read_test(node, i, source, path.parent, problems) for i, node in enumerate(items)]
        tests += [t for t in found if t is not None]
    if problems:
        raise ConfigError(problems)
    return tests


def _check_rendered(test: RuleTest, decisions: dict[str, Decision]) -> list[str]:
    failures = []
    for rule_id, expected_actions in test.rendered.items():
        decision = decisions.get(rule_id)
        if decision is None or not decision.matched:
            failures.append(f"rendered: rule '{rule_id}' did not match, nothing was rendered")
            continue
        for index, expected in enumerate(expected_actions or []):
            actual = decision.actions[index].fields if index < len(decision.actions) else {}
            for key, want in (expected or {}).items():
                if actual.get(key) != want:
                    failures.append(f"rendered: {rule_id} actions[{index}].{key}: expected {json.dumps(want)}, "
                                    f"got {json.dumps(actual.get(key))}")
    return failures


def _decisions(ruleset: RuleSet, test: RuleTest, webhook: str, seen: dict,
               scratch: ScratchStore) -> tuple[dict[str, Decision], Counter]:
    enricher = Pinned(test.geo, ruleset.enricher or bundled()) if test.geo else None
    """(the decision per rule, how often each rule fired), evaluated as the live engine does."""
    if test.steps is not None:
        return run_sequence(ruleset, test.steps, test.name, webhook, seen, test.tick, scratch, enricher)
    envelope: Envelope = envelope_from_claims(test.event)
    with scratch_rules(ruleset, scratch, enricher) as rules:
        decisions = {d.rule_id: d for uri in envelope.uris
                     for d in rules.evaluate(envelope, uri, webhook, seen=seen, now=envelope.iat_ms / 1000)}
    return decisions, Counter(rule_id for rule_id, d in decisions.items() if d.matched)


def run_test(ruleset: RuleSet, test: RuleTest, default_webhook: str, seen: dict,
             scratch: ScratchStore) -> TestResult:
    """Evaluate the test's event(s) exactly as the live engine would (in a store from `scratch`) and
    compare with the expectations."""
    try:
        decisions, fired = _decisions(ruleset, test, test.webhook or default_webhook, seen, scratch)
    except PayloadError as exc:
        return TestResult(test, [f"event is not a valid Security Event Token: {exc}"])
    matched = set(fired)
    failures = []
    known = {r.id for r in ruleset.rules}
    for rule_id in test.match:
        if rule_id not in known:
            failures.append(f"match: unknown rule '{rule_id}'{suggest(rule_id, sorted(known))}")
        elif rule_id not in matched:
            d = decisions.get(rule_id)
            why = f"{d.failed} (actual: {json.dumps(d.actual)})" if d else "it is not a candidate for this event"
            failures.append(f"expected '{rule_id}' to match, but it did not: {why}")
    for rule_id in sorted(matched - set(test.match)):
        failures.append(f"'{rule_id}' matched, but the test does not expect it")
    for rule_id, count in test.fires.items():
        if fired[rule_id] != count:
            failures.append(f"fires: expected '{rule_id}' to fire {count} time(s), it fired {fired[rule_id]}")
    return TestResult(test, failures + _check_rendered(test, decisions))


def coverage(ruleset: RuleSet, seen: dict[Leaf, set[bool]]) -> tuple[list[str], int, int]:
    """(uncovered conditions, covered count, total): a condition is covered when some test made it
    hold and some test made it fail."""
    uncovered, total = [], 0
    for rule in (r for r in ruleset.rules if r.enabled):
        for leaf in rule.leaves():
            total += 1
            outcomes = seen.get(leaf, set())
            missing = [word for word, flag in (("held", True), ("failed", False)) if flag not in outcomes]
            if missing:
                what = "never evaluated" if len(missing) == 2 else f"never {missing[0]}"
                uncovered.append(f"{rule.source}:{leaf.line}: rule '{rule.id}': {leaf.label}: {what}")
    return uncovered, total - len(uncovered), total


def run_rule_tests(ruleset: RuleSet, tests: Sequence[RuleTest], default_webhook: str,
                   scratch: ScratchStore) -> TestReport:
    """Run every test, each with a fresh store from `scratch`, and measure condition coverage."""
    seen: dict[Leaf, set[bool]] = {}
    results = [run_test(ruleset, test, default_webhook, seen, scratch) for test in tests]
    uncovered, covered, total = coverage(ruleset, seen)
    return TestReport(results, uncovered, covered, total)
