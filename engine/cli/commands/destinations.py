"""`idhooks destinations list` and `idhooks destinations test NAME [--event ALIAS]`: check a receiver before an
incident depends on it (like amtool's and Falcosidekick's test alerts).

`list` shows each configured destination's name, type and target host, never a secret (no path, query or
credentials). `test` renders a sample from the built-in catalog event (the first rule action that sends to NAME
for that event, or the action type's own test message when no rule does), sends it for real with the running
config's action, and prints the answer and whether the worker would retry it or dead-letter it.
"""

from __future__ import annotations

import argparse
import sys
import uuid

from actions import build_actions, registry
from actions.base import ActionContext
from actions.httpclient import Answer, HttpClient
from engine import catalog
from engine.cli.commands import add_config_option
from engine.config.settings import Config, load_config
from engine.deliver.captures import fill
from engine.errors import ConfigError, DeliveryError, RetryableError, UsageError
from engine.match.context import EvalContext
from engine.match.jobs import jobs_for
from engine.match.loader import load_for_config
from engine.match.rule_actions import CompiledAction, compile_action
from engine.match.ruleset import Decision, RenderedAction, RuleSet
from engine.ops.subscriptions import printable
from engine.secrets import redact
from engine.store.base import Job
from engine.verify.envelope import envelope_from_claims

DEFAULT_EVENT = "login.loginFailed"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("destinations", help="list destinations, or send a test notification to one",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="destinations_command", metavar="ACTION")
    sub.required = True
    listing = sub.add_parser("list", help="name, type and target host of every destination (never secrets)")
    add_config_option(listing)
    test = sub.add_parser("test", help="render a sample from a catalog event and send it for real")
    add_config_option(test)
    test.add_argument("name", metavar="NAME", help="a destination from config.yaml")
    test.add_argument("--event", metavar="ALIAS", help="the catalog event to render (see `idhooks catalog`; "
                                                       "default: the event of the first rule sending to NAME)")
    for action in (listing, test):
        action.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, offline=True)
    if args.destinations_command == "list":
        return _list(config)
    return _test(config, args.name, args.event)


def _list(config: Config) -> int:
    actions = build_actions(config.destinations, ActionContext(source=str(config.path)))
    if not config.destinations:
        print(f"no destinations in {config.path}")
        return 0
    rows = [(name, str(d.get("type")), actions.get(str(d.get("type")), name).target())
            for name, d in sorted(config.destinations.items())]
    width = max(len(name) for name, _, _ in rows) + 2
    print(f"{'NAME':<{width}}{'TYPE':<12}TARGET")
    for name, kind, target in rows:
        print(f"{name:<{width}}{kind:<12}{target}")
    return 0


def _test(config: Config, name: str, alias: str | None) -> int:
    if name not in config.destinations:
        known = ", ".join(sorted(config.destinations)) or "none"
        raise UsageError(f"{config.path}: no destination named {name!r}; configured: {known}")
    if alias is not None and alias not in catalog.entries():
        raise UsageError(f"unknown event {alias!r}: see `idhooks catalog` for the aliases")
    answers: list[Answer] = []
    actions = build_actions(config.destinations, ActionContext(source=str(config.path),
                                                               http=HttpClient(on_answer=answers.append)))
    kind = str(config.destinations[name].get("type"))
    action = actions.get(kind, name)
    ruleset = load_for_config(config)
    alias, source, compiled = _pick(ruleset, config, name, alias)
    job = _sample_job(ruleset, compiled, source, alias, config)
    print(f"destination {name!r} ({kind} -> {action.target()}): {source}, rendered from the catalog sample of {alias}")
    try:
        message = fill(job, {}, action.rule_fields) if job.captured_nonce else job.message
        captured = action.send(message, job.key)
    except DeliveryError as exc:
        _print_answers(answers)
        shown = redact(str(exc), actions.secrets)
        if isinstance(exc, RetryableError):
            after = f" (Retry-After {exc.retry_after:g}s)" if exc.retry_after is not None else ""
            print(f"result: failed: {shown}\nthe worker would retry it{after}, with backoff, until `retry_for` ends")
        else:
            print(f"result: failed: {shown}\nthe worker would NOT retry it: it would become a dead letter")
        if exc.response_snippet:
            print(f"answer body: {redact(exc.response_snippet, actions.secrets)[:500]}")
        return 1
    _print_answers(answers)
    print("result: delivered" + (f"; would capture {captured}" if captured else ""))
    return 0


def _pick(ruleset: RuleSet, config: Config, name: str, alias: str | None) -> tuple[str, str, CompiledAction]:
    """(event alias, what is sent, the action): a rule's action sending to `name`, else the type's sample."""
    for rule in ruleset.rules:
        for compiled in rule.actions:
            if compiled.destination != name:
                continue
            if alias is None:
                alias = next((e for e in rule.events if e in catalog.entries()), DEFAULT_EVENT)
            if rule in ruleset.candidates(catalog.alias_to_uri(alias)):
                return alias, f"rule {rule.id!r} action {compiled.index}", compiled
    kind = config.destinations[name].get("type")
    report: list[str] = []
    compiled = compile_action({kind: {"to": name, **registry()[str(kind)].test_fields}}, 0, config.destinations,
                              lambda line, where, message: report.append(f"{where}: {message}"))
    if compiled is None:
        raise ConfigError(report)
    return alias or DEFAULT_EVENT, f"the {kind} test message", compiled


def _sample_job(ruleset: RuleSet, compiled: CompiledAction, source: str, alias: str, config: Config) -> Job:
    envelope = envelope_from_claims(catalog.sample(alias))
    uri = catalog.alias_to_uri(alias)
    webhook = config.webhooks[0].name if config.webhooks else "asgardeo"
    context = EvalContext(envelope, uri, webhook, None, ruleset.enricher).template_context(
        {"id": "destinations-test", "description": source, "source": "idhooks destinations test"})
    errors: list[str] = []
    rendered = compiled.render(context, errors)
    for problem in errors:
        print(f"warning: {problem}", file=sys.stderr)
    decision = Decision("destinations-test", True,
                        actions=[RenderedAction(compiled.index, compiled.type, compiled.destination, rendered)])
    [new] = jobs_for(f"test-{uuid.uuid4().hex[:12]}", 0.0, decision)
    return Job(**{**new.__dict__}, id="test", status="pending", attempts=0, created_at=0.0, due_at=0.0)


def _print_answers(answers: list[Answer]) -> None:
    for answer in answers:
        print(f"answer: {answer.status} {printable(answer.reason[:100])}")
