"""The rules engine: YAML rules compiled at load, indexed by event URI, evaluated by one function.

    load_ruleset(paths, destinations=..., webhooks=...) -> RuleSet     (engine/match/loader.py)
    RuleSet.evaluate(envelope, uri, webhook) -> list[Decision]          (engine/match/ruleset.py)

The live engine, `idhooks test` and `idhooks replay` all call RuleSet.evaluate, so they cannot disagree.
"""

from engine.match.loader import load_ruleset, register_rule_key
from engine.match.ruleset import Decision, RenderedAction, Rule, RuleSet

__all__ = ["Decision", "RenderedAction", "Rule", "RuleSet", "load_ruleset", "register_rule_key"]

from engine.match.stateful import rulekeys as _stateful_keys  # noqa: E402,F401 - registers threshold/suppress/digest
from engine.match.stateful import memorykeys as _memory_keys  # noqa: E402,F401 - registers sequence/new_value/absence
