"""Rules benchmark (part of `make bench`; prints figures, asserts nothing): µs per event to evaluate an
event against 10, 1,000 and 10,000 loaded rules, spread over the WSO2 event types with realistic
conditions (shortcuts, JSONPath in/equals, claims, nested any/not, regexes; about 1 rule in 10 matches
and renders its action).

Two series:
- spread: the measured event type (login.loginFailed) has min(N, 40) candidate rules, the rest are spread
  over the other event types (~40 per type at 1,000 rules). Target: <= 100 µs per event at 1,000 rules.
- fixed: the measured event type always has exactly 10 candidate rules, whatever N is. Target: the
  10,000-rule figure <= 1.5x the 10-rule figure (the index makes cost independent of unrelated rules).

Then the cost of the JSONPath forms beyond plain paths (descent, filter, slice, wildcards) and of IP
enrichment (geo.*), each as µs per event for 10 candidate rules using that form, and as a ratio to 10
rules with plain paths measured in the same run; plus µs per enrichment lookup (cached and uncached).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import catalog
from engine.verify.envelope import envelope_from_claims
from engine.match import RuleSet, load_ruleset
from engine.match.enrich import Enricher

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


def per_event_us(ruleset: RuleSet, rounds: int = 2000, repeats: int = 5, public_ip: bool = False) -> float:
    claims = catalog.entries()[MEASURED].sample()
    if public_ip:  # the samples use a documentation address, which enrichment skips
        next(iter(claims["events"].values()))["initiatorIpAddress"] = "8.8.8.8"
    env = envelope_from_claims(claims)
    uri = env.uris[0]
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(rounds):
            ruleset.evaluate(env, uri, "asgardeo")
        best = min(best, (time.process_time() - started) / rounds)
    return best * 1e6


USERNAME = "http://wso2.org/claims/username"
FORMS = {
    "plain": "{path: $.application.name, equals: 'App %d'}",
    "descent": "{path: $..orgHandle, equals: 'org-%d'}",
    "filter": "{path: \"$.user.claims[?(@.uri == '" + USERNAME + "')].value\", equals: 'u%d'}",
    "slice": "{path: '$.user.claims[0:2].value', equals: 'u%d'}",
    "wildcard": "{path: '$.application.*', equals: 'App %d'}",
    "geo": "{path: geo.country, equals: 'X%d'}",
}


def form_rules(form: str, folder: Path) -> RuleSet:
    lines = ["rules:\n"] + [f"  - id: {form}-{n}\n    event: {MEASURED}\n    when: {FORMS[form].replace('%d', str(n))}\n"
                            f"    actions: [{{log: {{message: x}}}}]\n" for n in range(10)]
    path = folder / f"form-{form}.yaml"
    path.write_text("".join(lines))
    return load_ruleset([path], destinations={})


def path_forms(folder: Path) -> None:
    print("\nJSONPath forms and enrichment: CPU µs per event, 10 candidate rules using the form")
    baseline = 0.0
    for form in FORMS:
        us = per_event_us(form_rules(form, folder), public_ip=form == "geo")
        baseline = baseline or us
        print(f"{form:<9} {us:>8.1f} µs  {us / baseline:>5.2f}x plain")
    enricher = Enricher()
    rounds = 20_000
    started = time.process_time()
    for i in range(rounds):
        enricher.lookup.cache_clear() if i % 4096 == 0 else None
        enricher.geo(f"{1 + i % 200}.{i // 200 % 256}.{i % 251}.7")
    uncached = (time.process_time() - started) / rounds * 1e6
    started = time.process_time()
    for _ in range(rounds):
        enricher.geo("8.8.8.8")
    cached = (time.process_time() - started) / rounds * 1e6
    print(f"enrichment lookup (bundled data): {uncached:.2f} µs uncached, {cached:.2f} µs cached")


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
    with tempfile.TemporaryDirectory() as tmp:
        path_forms(Path(tmp))


if __name__ == "__main__":
    main()
