"""Stateful rules: thresholds over time windows, distinct counts, suppression and digests.

    specs.py      the YAML keys `threshold`, `suppress`, `digest`, parsed and checked at load
    rulekeys.py   those keys as a rule-key extension (STATEFUL) and their paths compiled to lookups
    decide.py     evaluate() for a matching event, fire_due_digests() for the periodic tick
    evaluator.py  StatefulRules: a RuleSet plus the store's state, what the processor evaluates with

The state itself (the StateStore contract, Threshold and the sliding window shared by every backend)
lives in the store layer: engine/store/state.py and engine/store/window.py.
"""
