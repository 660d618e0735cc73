"""Rules benchmark (part of `make bench`; prints figures, asserts nothing): µs per event to evaluate an
event against 10, 1,000 and 10,000 loaded rules, spread over the WSO2 event types with realistic
conditions (shortcuts, JSONPath in/equals, claims, nested any/not, regexes; about 1 rule in 10 matches
and renders its action).

Two series:
- spread: the measured event type (login.loginFailed) has min(N, 40) candidate rules, the rest are spread
  over the other event types (~40 per type at 1,000 rules). Target: <= 100 µs per event at 1,000 rules.
- fixed: the measured event type always has exactly 10 candidate rules, whatever N is. Target: the
  10,000-rule figure <= 1.5x the 10-rule figure (the index makes cost independent of unrelated rules).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import catalog  # noqa: E402
from engine.verify.envelope import envelope_from_claims  # noqa: E402
from engine.match import RuleSet, load_ruleset  # noqa: E402

MEASURED = "login.loginFailed"
ITEM = "\n        - "  # a new item of `all:` / `any:` in the generated YAML
CONDITIONS = [
    "initiatorType: USER\n      all:" + ITEM + "{path: $.application.name, in: [Console, 'App %d']}",
    "all:" + ITEM + "{claim: username, ends_with: '@corp%d.example'}"
    + ITEM + "{path: $.reason.context.failedStep.step, gte: 2}",
    "any:" + ITEM + "{path: $.application.id, equals: 'app-%d'}"
    + ITEM + "not: {envelope: $.iss, starts_with: 'https://api.asgardeo.io/'}",
    "all:" + ITEM + "{path: $.initiatorIpAddress, matches: '^10\\.%d\\.'}" + ITEM + "{path: $.user.id, exists: true}",
    "action: [LOGIN, CREDENTIAL_UPDATE]\n      all:"
    + ITEM + "{path: $.tenant.name, equals: tenant-%d, ignore_case: true}",
    "all:" + ITEM + "{path: '$.user.claims[*].uri', contains: 'urn:x:%d'}",
    "initiatorType: [USER, ADMIN]\n      all:" + ITEM + "{path: $.organization.name, not_in: [org-%d]}",
]
MATCHING = "initiatorType: USER\n      all:" + ITEM + "{path: $.application.name, equals: Customer Portal}"


def rule_yaml(number: int, alias: str, matching: bool) -> str:
    when = MATCHING if matching else CONDITIONS[number % len(CONDITIONS)].replace("%d", str(number))
    return (f"  - id: rule-{number}\n    event: {alias}\n    when:\n      {when}\n"
            f"    actions:\n      - log: {{message: 'rule-{number}: {{{{ username }}}} from {{{{ ip }}}}'}}\n")


def build(total: int, candidates: int, folder: Path) -> tuple[RuleSet, float]:
    others = [a for a in catalog.entries() if a != MEASURED]
    lines = ["rules:\n"]
    for number in range(total):
        alias = MEASURED if number < candidates else others[number % len(others)]
        lines.append(rule_yaml(number, alias, matching=number % 10 == 0))
    path = folder / f"bench-{total}-{candidates}.yaml"
    path.write_text("".join(lines))
    started = time.process_time()
    ruleset = load_ruleset([path], destinations={})
    return ruleset, time.process_time() - started


def per_event_us(ruleset: RuleSet, rounds: int = 2000, repeats: int = 5) -> float:
    env = envelope_from_claims(catalog.entries()[MEASURED].sample())
    uri = env.uris[0]
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(rounds):
            ruleset.evaluate(env, uri, "asgardeo")
        best = min(best, (time.process_time() - started) / rounds)
    return best * 1e6


def main() -> None:
    print("rules benchmark: CPU µs per event (best of 5 x 2000 evaluations of login.loginFailed)")
    print(f"{'series':<8} {'rules':>7} {'candidates':>10} {'µs/event':>9} {'load s':>7}")
    results: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for series in ("spread", "fixed"):
            for total in (10, 1_000, 10_000):
                candidates = min(total, 40) if series == "spread" else 10
                ruleset, load_seconds = build(total, candidates, Path(tmp))
                results[(series, total)] = us = per_event_us(ruleset)
                print(f"{series:<8} {total:>7,} {candidates:>10} {us:>9.1f} {load_seconds:>7.2f}")
    print(f"(CPU time of this process; 1-minute load average of the machine: {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs)")
    print(f"target 1: spread at 1,000 rules = {results[('spread', 1000)]:.1f} µs (<= 100)")
    ratio = results[("fixed", 10000)] / results[("fixed", 10)]
    print(f"target 2: fixed 10 candidates, 10,000 rules / 10 rules = {ratio:.2f}x (<= 1.5)")


if __name__ == "__main__":
    main()
