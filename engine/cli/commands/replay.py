"""`idhooks replay --since 1h [--rules DIR]`: re-evaluate stored events against the current rule set (or an
edited copy) and print what would have fired. Nothing is sent, queued or recorded: it is a backtest.
Rules whose outcome differs from the event's stored decision record are marked (new / no longer). Absence
timers started by replayed events fire when the replay passes their expiry (or by now), as `timer expired`."""

from __future__ import annotations

import argparse
import json
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from engine.cli.commands import add_config_option
from engine.config.settings import load_config
from engine.config.durations import parse_duration
from engine.verify.envelope import parse_envelope
from engine.errors import PayloadError
from engine.match.loader import load_for_config
from engine.offline.report import decision_lines, event_type, matched_rules, when
from engine.match.stateful.evaluator import StatefulRules
from engine.offline.sequences import scratch_rules
from engine.store import open_store, scratch_store
from engine.store.base import StoredEvent


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("replay", help="re-evaluate stored events against the rules (no side effects)",
                                   description=__doc__)
    add_config_option(parser)
    parser.add_argument("--since", required=True, type=parse_duration, metavar="DURATION",
                        help="events received within this long, e.g. 1h, 30m, 7d")
    parser.add_argument("--rules", action="append", type=Path, metavar="DIR",
                        help="rule file or folder to use instead of the config's rules.paths (repeatable)")
    parser.add_argument("--limit", type=int, default=10000, help="at most this many events (default 10000)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)


def replay_event(rules: StatefulRules, event: StoredEvent) -> list[dict[str, Any]]:
    """One entry per URI of the event: what fires now, and how that differs from the stored record.
    Stateful rules count over the replayed events in a throw-away store, as if they arrived again."""
    try:
        envelope = parse_envelope(event.body)
    except PayloadError as exc:
        return [{"jti": event.jti, "error": str(exc)}]
    results = []
    for uri in envelope.uris:
        decisions = [d.to_json() for d in rules.evaluate(envelope, uri, event.webhook, now=event.received_at)]
        before = set(matched_rules(r for r in event.decisions or []  # not a later timer's/digest's firing
                                   if r.get("uri", uri) == uri and "fired_by" not in r))
        now = set(matched_rules(decisions))
        results.append({"jti": event.jti, "received_at": event.received_at, "type": event_type(uri),
                        "fired": [d for d in decisions if d["matched"]],
                        "new": sorted(now - before) if event.decisions is not None else [],
                        "no_longer": sorted(before - now)})
    return results


def timer_results(rules: StatefulRules, now: float) -> list[dict[str, Any]]:
    """Absence timers (and digests) of the replayed events that expired by `now`: what they would send."""
    fired: list[dict[str, Any]] = []
    rules.tick(now, send=lambda decision: fired.append(decision.to_json()))
    if not fired:
        return []
    return [{"jti": f"(timer) {d.get('firing') or d['rule']}", "received_at": now, "type": "timer expired",
             "fired": [d], "new": [], "no_longer": []} for d in fired]


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, offline=True)
    ruleset = load_for_config(config, args.rules)
    with closing(open_store(config.store)) as store:
        events = store.list_events(since=time.time() - args.since, limit=args.limit)
    with scratch_rules(ruleset, scratch_store) as rules:
        results = []
        for event in (e for e in reversed(events) if e.status != "stale"):
            results += timer_results(rules, event.received_at)
            results += replay_event(rules, event)
        results += timer_results(rules, time.time())
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False, default=str))
        return 0
    for result in results:
        _print_result(result)
    fired = [r for r in results if r.get("fired")]
    changed = [r for r in results if r.get("new") or r.get("no_longer")]
    print(f"replayed {len(events)} events: {len(fired)} would fire "
          f"{sum(len(a['actions']) for r in fired for a in r['fired'])} actions; "
          f"{len(changed)} differ from their decision record")
    return 0


def _print_result(result: dict[str, Any]) -> None:
    if "error" in result:
        print(f"{result['jti']}: cannot replay: {result['error']}")
        return
    if not (result["fired"] or result["no_longer"]):
        return
    print(f"{when(result['received_at'])}  {result['jti']}  {result['type']}")
    for line in decision_lines(result["fired"]):
        rule = line.split()[1] if line.lstrip().startswith("MATCH") else ""
        print(line + ("  (new)" if line.lstrip().startswith("MATCH") and rule in result["new"] else ""))
    for rule in result["no_longer"]:
        print(f"  no longer matches: {rule}")
