"""The rules engine: YAML rules compiled at load, indexed by event URI.

    load_ruleset(paths, destinations=..., extensions=...) -> RuleSet     (engine/match/loader.py)
    StatefulRules(ruleset, store).evaluate(envelope, uri, webhook)      (engine/match/stateful/evaluator.py)
    jobs_for(jti, received_at, decision) -> list[NewJob]                (engine/match/jobs.py)

The live processor, `idhooks test` and `idhooks replay` all evaluate through StatefulRules, so they cannot
disagree.
"""

from engine.match.extension import RuleExtension, RuleKey
from engine.match.loader import load_ruleset
from engine.match.ruleset import Decision, RenderedAction, Rule, RuleSet

__all__ = ["Decision", "RenderedAction", "Rule", "RuleExtension", "RuleKey", "RuleSet", "load_ruleset"]
