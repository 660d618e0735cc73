"""`idhooks test EVENT.json... [--config PATH] [--json] [--advance 25h]`: evaluate events offline, in the
given order, with the live engine's evaluator and print, per candidate rule, matched (with the rendered
actions; nothing is sent) or the first condition that failed and the value found; `--advance` then shows
what expired absence timers and digests would send. With no event, run the rule tests in
<rules>/tests/*.yaml and report condition coverage; exit 1 if any test fails."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.cli.commands import add_config_option
from engine.config.durations import parse_duration
from engine.config.settings import Config, load_config
from engine.verify.envelope import envelope_from_claims
from engine.errors import ConfigError, PayloadError, UsageError
from engine.match.loader import display_path, load_for_config
from engine.offline.report import decision_lines
from engine.ops.tryrules import evaluate_envelopes
from engine.match.ruleset import RuleSet
from engine.store import scratch_store
from engine.offline.ruletests import TestReport, load_rule_tests, run_rule_tests, test_files


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("test", help="evaluate events or run rule tests offline",
                                   description=__doc__)
    add_config_option(parser)
    parser.add_argument("events", nargs="*", type=Path, metavar="EVENT.json",
                        help="Security Event Token files; none: run the rule tests")
    parser.add_argument("--rules", action="append", type=Path, metavar="PATH",
                        help="rule file or folder to use instead of the config's rules.paths (repeatable)")
    parser.add_argument("--webhook", metavar="NAME", help="evaluate as received on this webhook "
                                                          "(default: the first configured one)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--advance", type=parse_duration, metavar="DURATION",
                        help="after the events, move the clock this far past the last one and show what absence "
                             "timers and digests would send then, e.g. 25h")
    parser.set_defaults(func=run)


def default_webhook(config: Config, chosen: str | None) -> str:
    if chosen is not None and config.webhook(chosen) is None:
        raise UsageError(f"--webhook: no webhook named {chosen!r} in {config.path}")
    return chosen or (config.webhooks[0].name if config.webhooks else "")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, offline=True)
    paths = args.rules or list(config.rules.paths)
    ruleset = load_for_config(config, paths)
    webhook = default_webhook(config, args.webhook)
    if args.events:
        return _evaluate_files(ruleset, args.events, webhook, args.json, args.advance)
    tests = load_rule_tests(test_files(paths))
    if not tests and not args.json:
        print("no rule tests found (they live in tests/*.yaml inside each rules folder)")
    report = run_rule_tests(ruleset, tests, webhook, scratch_store)
    if args.json:
        _print_json(_report_json(report))
    else:
        _print_report(report)
    return 1 if report.failed else 0


def _read_event(path: Path) -> Any:
    try:
        return envelope_from_claims(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, PayloadError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        kind = "not a Security Event Token" if isinstance(exc, PayloadError) else "cannot read JSON"
        raise ConfigError(f"{display_path(path)}: {kind}: {reason}") from None


def _evaluate_files(ruleset: RuleSet, files: list[Path], webhook: str, as_json: bool,
                    advance: float | None = None) -> int:
    """The files are one stream in the given order, each arriving at its own event time (stateful rules
    count across them with a throw-away store); `advance` then runs the periodic tick that much later."""
    results = evaluate_envelopes(ruleset, [(display_path(path), _read_event(path)) for path in files], webhook,
                                 advance)
    if as_json:
        _print_json(results)
        return 0
    for result in results:
        print(f"{result['file']}: {result['type']}" + (f" (jti {result['jti']})" if result["uri"] else ""))
        print("\n".join(decision_lines(result["decisions"])) or
              ("  no rule handles this event type" if result["uri"] else "  nothing due"))
    return 0


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _report_json(report: TestReport) -> dict[str, Any]:
    return {"passed": len(report.results) - len(report.failed), "failed": len(report.failed),
            "tests": [{"name": r.test.name, "source": f"{r.test.source}:{r.test.line}", "ok": not r.failures,
                       "failures": r.failures} for r in report.results],
            "coverage": {"covered": report.covered, "conditions": report.conditions,
                         "uncovered": report.uncovered}}


def _print_report(report: TestReport) -> None:
    for result in report.results:
        status = "FAIL" if result.failures else "ok  "
        print(f"{status} {result.test.source}:{result.test.line}: {result.test.name}")
        print("\n".join(f"       {failure}" for failure in result.failures), end="\n" if result.failures else "")
    print(f"{len(report.results) - len(report.failed)} passed, {len(report.failed)} failed")
    print(f"condition coverage: {report.covered} of {report.conditions} conditions both held and failed")
    for line in report.uncovered:
        print(f"  not covered: {line}")
