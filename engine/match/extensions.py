"""The rule-key extensions the loader knows by default: one line per extension module.

Tests (and other tools) may pass their own tuple to `load_ruleset(..., extensions=...)`.
"""

from __future__ import annotations

from engine.match.extension import RuleExtension
from engine.match.stateful.memorykeys import MEMORY
from engine.match.stateful.rulekeys import STATEFUL

RULE_EXTENSIONS: tuple[RuleExtension, ...] = (STATEFUL, MEMORY)
