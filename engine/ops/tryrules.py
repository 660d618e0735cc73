"""Trying rules without side effects: `idhooks test EVENT.json --json` and the rule playground (POST
/api/v1/rules/test, the console's playground) evaluate with the live engine's evaluator over a throw-away
state store, so nothing is stored or sent and both answer with the same JSON.

Rule text from a browser is hostile until compiled: it is bounded in size (and, like every YAML idhooks
reads, in alias expansion and depth), and a run has a deadline and a cap on concurrent runs."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, TypeVar

from engine import catalog
from engine.config.durations import format_duration
from engine.config.settings import Config, suggest
from engine.config.yamlsource import load_yaml_text
from engine.errors import BusyError, ConfigError, InvalidInputError, PayloadError
from engine.match.loader import load_ruleset_text
from engine.match.ruleset import RuleSet
from engine.match.stateful.evaluator import StatefulRules
from engine.offline.report import event_type
from engine.offline.sequences import scratch_rules
from engine.runtime import Current
from engine.store import scratch_store
from engine.verify.envelope import Envelope, envelope_from_claims

MAX_RULES_CHARS = 64 * 1024
DEADLINE = 5.0
CONCURRENT_RUNS = 2
PLAYGROUND_SOURCE = "playground.yaml"
T = TypeVar("T")

_runs = threading.BoundedSemaphore(CONCURRENT_RUNS)


def evaluate_envelopes(ruleset: Any, labelled: Iterable[tuple[str, Envelope]], webhook: str,
                       advance: float | None = None) -> list[dict[str, Any]]:
    """One result per (event, URI): {file, jti, uri, type, decisions}. The events are one stream in the
    given order, each at its own event time (stateful rules count across them with a throw-away store);
    `advance` then runs the periodic tick that much after the last event (timers and digests due)."""
    labelled = list(labelled)
    with scratch_rules(ruleset, scratch_store) as rules:
        results = [{"file": label, "jti": env.jti, "uri": uri, "type": event_type(uri),
                    "decisions": [d.to_json() for d in rules.evaluate(env, uri, webhook, now=env.iat_ms / 1000)]}
                   for label, env in labelled for uri in env.uris]
        if advance is not None and labelled:
            fired: list[dict[str, Any]] = []
            rules.tick(max(env.iat_ms for _, env in labelled) / 1000 + advance,
                       send=lambda decision: fired.append(decision.to_json()))
            results.append({"file": f"(clock advanced {format_duration(advance)})", "jti": "-", "uri": "",
                            "type": "timers and digests due", "decisions": fired})
    return results


def parse_rules_text(text: str, config: Config) -> RuleSet:
    """Compile the rule file in `text` against the config's destinations and webhooks."""
    if len(text) > MAX_RULES_CHARS:
        raise InvalidInputError(f"rules: {len(text)} characters; the playground takes at most {MAX_RULES_CHARS}")
    try:  # load_yaml_text refuses alias bombs and deep nests before building anything
        raw = load_yaml_text(text, PLAYGROUND_SOURCE)
        return load_ruleset_text(raw, PLAYGROUND_SOURCE, config)
    except ConfigError as exc:
        raise InvalidInputError("\n".join(exc.problems)) from None


def playground_envelope(event: Any = None, alias: str | None = None) -> tuple[str, Envelope]:
    """(label, envelope) of a pasted event (a SET as a JSON object) or of a catalog sample."""
    if (event is None) == (alias is None):
        raise InvalidInputError("give exactly one of `event` (a Security Event Token) or `catalog` (an alias)")
    if alias is not None:
        entries = catalog.entries()
        if not isinstance(alias, str) or alias not in entries:
            hint = suggest(alias, list(entries)) if isinstance(alias, str) else ""
            raise InvalidInputError(f"catalog: unknown event type {str(alias)[:100]!r}{hint}; see idhooks catalog")
        return f"catalog:{alias}", envelope_from_claims(entries[alias].sample())
    if not isinstance(event, dict):
        raise InvalidInputError("event: expected a JSON object (a Security Event Token)")
    try:
        return "event", envelope_from_claims(event)
    except PayloadError as exc:
        raise InvalidInputError(f"event: {exc}") from None


def try_rules(config: Config, live: Current[StatefulRules], *, event: Any = None, alias: str | None = None,
              rules: str | None = None, webhook: str | None = None) -> list[dict[str, Any]]:
    """What `idhooks test --json` prints for one event: the pasted `rules` (or the live rule set when None),
    evaluated within DEADLINE seconds; nothing is stored or sent."""
    label, envelope = playground_envelope(event, alias)
    if webhook is None:
        webhook = config.webhooks[0].name if config.webhooks else ""
    elif config.webhook(webhook) is None:
        raise InvalidInputError(f"webhook: no webhook named {webhook[:100]!r} is configured")
    return bounded_run(lambda: evaluate_envelopes(parse_rules_text(rules, config) if rules is not None
                                                  else live.get().ruleset, [(label, envelope)], webhook))


def bounded_run(work: Callable[[], T]) -> T:
    """Run `work` on a daemon thread with DEADLINE; at most CONCURRENT_RUNS at once. A run past its deadline
    is abandoned (its thread finishes on its own) and its slot stays taken until it does."""
    if not _runs.acquire(timeout=DEADLINE):
        raise BusyError("the rule playground is busy with other runs; try again in a few seconds")
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, who re-raises it
            outcome["error"] = exc
        finally:
            _runs.release()
            done.set()

    threading.Thread(target=run, name="idhooks-playground", daemon=True).start()
    if not done.wait(DEADLINE):
        raise InvalidInputError(f"the rules took longer than {DEADLINE:g} s to evaluate this event")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
