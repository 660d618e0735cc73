"""`idhooks simulate verify|send`: play the Asgardeo hub (or WSO2 IS) against an endpoint. See engine/offline/simulate.py."""

from __future__ import annotations

import argparse
import os
import re
from typing import Callable
from urllib.parse import urlsplit

import requests

from engine.offline import simulate
from engine.errors import ConfigError, UsageError
from engine.secrets import Secret

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("simulate", help="send hub verification requests or signed sample events",
                                   description="A stand-in for the Asgardeo hub: test an endpoint without a tenant.")
    actions = parser.add_subparsers(dest="simulate_command", metavar="ACTION")
    actions.required = True
    verify = actions.add_parser("verify", help="send the WebSub verification GET and check the echo")
    verify.add_argument("--url", required=True,
                        help="the webhook endpoint, e.g. http://127.0.0.1:8080/webhooks/asgardeo")
    verify.add_argument("--topic", required=True, help="hub.topic, e.g. acme.<org-id>.schema.wso2.v1.event.login")
    verify.add_argument("--mode", choices=("subscribe", "unsubscribe"), default="subscribe")
    verify.set_defaults(func=run_verify)
    send = actions.add_parser("send", help="send signed catalog events")
    send.add_argument("event", metavar="ALIAS|FILE",
                      help="a catalog alias or alias/variant (see `idhooks catalog`) or a JSON file")
    send.add_argument("--url", required=True, help="the webhook endpoint")
    send.add_argument("--secret-env", required=True, metavar="VAR",
                      help="name of the environment variable holding the webhook secret")
    send.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", dest="overrides",
                      help="override a field of the event body: a dotted path, or claims.X for a claim; the value "
                           "is JSON when it parses (5, true, [\"a\"]), else text; repeatable")
    send.add_argument("--count", type=_positive(int), default=1, metavar="N", help="events to send (default 1)")
    send.add_argument("--rate", type=_positive(float), default=None, metavar="R",
                      help="at most R events per second (default: as fast as answers come)")
    send.add_argument("--format", choices=tuple(simulate.FORMATS), default="hub", dest="fmt",
                      help="hub: Asgardeo's serialisation and X-Hub-Signature; wso2-is: compact JSON and "
                           "x-wso2-event-signature")
    send.set_defaults(func=run_send)


def _positive(kind: type) -> Callable[[str], float]:
    """An argparse type for a number above 0 of `kind` (int or float)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
        return value
    return parse


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--url {url!r}: expected an http:// or https:// URL")


def run_verify(args: argparse.Namespace) -> int:
    _check_url(args.url)
    report = simulate.verify_subscription(args.url, args.topic, args.mode)
    print(f"GET {args.url} hub.mode={args.mode} hub.topic={args.topic}")
    print(f"challenge:    {report.challenge!r}")
    if report.status is not None:
        print(f"status:       {report.status}")
        print(f"content type: {report.content_type or '(none)'}")
        print(f"body:         {report.body[:200]!r} ({len(report.body)} bytes)")
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"FAIL: {problem.what}\n  fix: {problem.fix}")
    if report.ok:
        print(f"OK: the endpoint echoed the challenge exactly; the hub would accept this {args.mode}.")
    return 0 if report.ok else 1


def run_send(args: argparse.Namespace) -> int:
    _check_url(args.url)
    secret = _secret_from_env(args.secret_env)
    try:
        overrides = [simulate.parse_override(text) for text in args.overrides]
        template = simulate.load_template(args.event)
        simulate.build_event(template, overrides, jti="check", iat_ms=0)  # bad --set paths fail before sending
    except ConfigError as exc:  # the event or a --set given on the command line
        raise UsageError(str(exc)) from None
    results: list[simulate.SendResult] = []
    with requests.Session() as session:
        sender = simulate.EventSender(args.url, secret, args.fmt, session=session)
        for result in sender.send_all(template, overrides, args.count, args.rate):
            results.append(result)
            _print_result(len(results), args.count, result)
    accepted = sum(r.ok for r in results)
    unanswered = sum(r.status is None for r in results)
    print(f"sent {len(results)} {args.fmt} event(s) to {args.url}: {accepted} accepted (2xx), "
          f"{len(results) - accepted - unanswered} rejected, {unanswered} without an answer")
    return 0 if accepted == len(results) else 1


def _print_result(number: int, total: int, result: simulate.SendResult) -> None:
    status = result.status if result.status is not None else "ERROR"
    print(f"[{number}/{total}] {status} {result.detail} jti={result.jti}", flush=True)
    if not result.ok and result.body:
        print(f"  body: {result.body!r}")
    if result.status in simulate.SEND_HINTS:
        print(f"  fix: {simulate.SEND_HINTS[result.status]}")


def _secret_from_env(name: str) -> Secret:
    """The secret from the variable named `name`. A name that does not look like a variable name may be the
    secret itself pasted by mistake, so it is never echoed."""
    value = os.environ.get(name, "")
    if value:
        return Secret(value, source=name)
    if not _ENV_NAME.match(name):
        raise UsageError("--secret-env takes the NAME of an environment variable holding the secret (e.g. "
                          "--secret-env ASGARDEO_WEBHOOK_SECRET), not the secret itself; no such variable is set")
    raise UsageError(f"--secret-env {name}: the environment variable {name} is not set or empty; export the "
                      f"webhook secret in it, e.g. `export {name}=\"$(cat var/webhook-secret)\"`")
