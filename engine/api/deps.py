"""What the API and console need from the running service, passed in so tests build them around a tmp
store without a server (the app-factory convention)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.throttle import FailedAuthThrottle
from engine.config.settings import Config
from engine.errors import NotFoundError
from engine.match.stateful.evaluator import StatefulRules
from engine.metrics import Metrics
from engine.runtime import Current
from engine.store.base import Store

API_PREFIX = "/api/v1"
CONSOLE_PREFIX = "/console"
OFF_MESSAGE = ("the API and console are off: add api.tokens to config.yaml (a name, a token_file and a role "
               "viewer|operator; see docs/console.md)")


@dataclass
class ApiDeps:
    config: Current[Config]
    store: Store
    rules: Current[StatefulRules]  # the live rules (the playground's default rules): `.get().ruleset`
    readiness: Callable[[], dict[str, Any]]  # {"loaded_at": ..., "errors": [...]} of the running rule set
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    throttle: FailedAuthThrottle = field(default_factory=FailedAuthThrottle)  # wrong tokens per address

    def require_on(self) -> None:
        """NotFoundError while no token is configured (a reload may add or remove them)."""
        if not self.config.get().api.tokens:
            raise NotFoundError(OFF_MESSAGE)
