"""Rule tests over time: `sequence:` in rules/tests/*.yaml lists events in arrival order, each with its
event time, and runs them through the same evaluator as the live engine (StatefulRules) with a fresh
throw-away store passed in by the caller, so thresholds, distinct counts, suppression and digests are tested offline.

    - name: five failed logins within ten minutes alert once
      sequence:
        - {event: login.loginFailed, at: 0s, repeat: 5, every: 1m}  # event times 0, 1m, ... 4m
        - {event: login.loginFailed, at: 2m, late: 30s}               # arrives 30 s after its event time
        - {event: login.loginFailed, at: 5m, jti: dup-1}              # a fixed jti (for duplicates)
        - {advance: 25h}                                              # the clock moves on: due timers fire
      tick: 2h           # then run the periodic digest tick at this offset from the first event
      match: [brute-force-user]        # the rules that fired at least once
      fires: {brute-force-user: 1}     # optional: exactly how many times

Times are offsets from the first event's own `iat`. Each copy gets a fresh jti unless `jti` is given.
`{advance: D}` moves the clock D past the latest arrival so far and runs the periodic tick there (digests
whose period is over and absence timers that expired fire, as in the server); later events still take
their `at` from the first event.
"""

from __future__ import annotations

import copy
from collections import Counter
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from engine.config.schema import suggest
from engine.config.durations import parse_duration
from engine.verify.envelope import envelope_from_claims
from engine.match.ruleset import Decision
from engine.match.stateful.evaluator import StatefulRules
from engine.store.base import Store

STEP_KEYS = ("event", "file", "set", "at", "late", "repeat", "every", "jti", "advance")


@dataclass(frozen=True)
class Step:
    event: dict[str, Any]
    at: float
    late: float = 0.0
    repeat: int = 1
    every: float = 0.0
    jti: str | None = None
    advance: float | None = None  # a clock step instead of an event


ScratchStore = Callable[[], AbstractContextManager[Store]]
"""Opens a fresh, empty store that is thrown away afterwards; the CLI passes engine.store.scratch_store."""


@contextmanager
def scratch_rules(ruleset: Any, scratch: ScratchStore, enricher: Any = None) -> Iterator[StatefulRules]:
    """The live evaluator over a fresh store that is thrown away afterwards (nothing is sent);
    `enricher` replaces the rule set's IP enrichment (a rule test's `geo:`)."""
    with scratch() as store:
        yield StatefulRules(ruleset, store, enricher=enricher)


def _duration(node: dict, key: str, default: float) -> float:
    if key not in node:
        return default
    try:
        return parse_duration(node[key])
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def read_step(node: Any, index: int, read_event: Callable[[dict], dict[str, Any]]) -> Step:
    """One `sequence:` item; ValueError naming the problem (`sequence[2].at: ...`)."""
    where = f"sequence[{index}]"
    if not isinstance(node, dict):
        raise ValueError(f"{where}: expected a mapping like {{event: login.loginFailed, at: 1m}}")
    if "advance" in node:
        if len(node) != 1:
            raise ValueError(f"{where}: an advance step takes nothing else, like {{advance: 25h}}")
        try:
            return Step({}, 0.0, advance=_duration(node, "advance", 0.0))
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from None
    for key in node:
        if key not in STEP_KEYS:
            raise ValueError(f"{where}.{key}: unknown key{suggest(str(key), STEP_KEYS)}; "
                             f"expected one of: {', '.join(STEP_KEYS)}")
    if "at" not in node:
        raise ValueError(f"{where}: missing 'at' (the event time as an offset like 0s or 4m)")
    repeat = node.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"{where}.repeat: expected a whole number >= 1, got {repeat!r}")
    try:
        return Step(read_event(node), _duration(node, "at", 0.0), _duration(node, "late", 0.0), repeat,
                    _duration(node, "every", 0.0), str(node["jti"]) if "jti" in node else None)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def _events(steps: list[Step], name: str) -> Iterator[tuple[dict[str, Any] | None, float]]:
    """(event, arrival time) in order, with event times and jtis filled in; (None, time) for an advance."""
    start = _start(steps)
    clock = start
    for index, step in enumerate(steps):
        if step.advance is not None:
            clock += step.advance
            yield None, clock
            continue
        for copy_index in range(step.repeat):
            event = copy.deepcopy(step.event)
            time = start + step.at + copy_index * step.every
            event["iat"] = round(time * 1000)
            event["jti"] = step.jti or f"{name}#{index}.{copy_index}"
            clock = max(clock, time + step.late)
            yield event, time + step.late


def _start(steps: list[Step]) -> float:
    """The first event's own time, which `at` offsets count from."""
    first = next((step for step in steps if step.advance is None), None)
    return float(first.event.get("iat", 0)) / 1000 if first else 0.0


def run_sequence(ruleset: Any, steps: list[Step], name: str, webhook: str, seen: dict,
                 tick: float | None, scratch: ScratchStore,
                 enricher: Any = None) -> tuple[dict[str, Decision], Counter]:
    """(the last decision per rule, preferring its last firing; how often each rule fired)."""
    last: dict[str, Decision] = {}
    fired: Counter = Counter()

    def record(decision: Decision) -> None:
        if decision.matched:
            fired[decision.rule_id] += 1
        if decision.matched or not last.get(decision.rule_id, decision).matched:
            last[decision.rule_id] = decision

    with scratch_rules(ruleset, scratch, enricher) as rules:
        for event, arrival in _events(steps, name):
            if event is None:
                rules.tick(arrival, send=record)
                continue
            envelope = envelope_from_claims(event)
            for uri in envelope.uris:
                for decision in rules.evaluate(envelope, uri, webhook, seen=seen, now=arrival):
                    record(decision)
        if tick is not None:
            rules.tick(_start(steps) + tick, send=record)
    return last, fired
