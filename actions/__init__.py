"""Action plugins: one module per action type (see actions/base.py). `registry()` discovers them;
`build_actions()` turns config.yaml's `destinations:` into the running ActionSet."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import lru_cache
from typing import Any, Mapping

from actions.base import Action, ActionContext
from engine.config.schema import line_of, suggest
from engine.errors import ConfigError, PermanentError
from engine.secrets import Secret


@lru_cache(maxsize=1)
def registry() -> dict[str, type[Action]]:
    """YAML name -> Action class, from every module of this package (abstract bases such as
    httpresult.HttpExchangeAction are not action types)."""
    found: dict[str, type[Action]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_") or module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Action) and not inspect.isabstract(cls) and cls.__module__ == module.__name__:
                found[cls.name] = cls
    return found


class ActionSet:
    """The actions of one loaded config: one instance per destination, plus the destination-less ones.
    Swapped as a whole on config reload, so a worker always sends with one consistent set."""

    def __init__(self, instances: Mapping[tuple[str, str], Action]) -> None:
        self._instances = dict(instances)
        self.secrets: list[Secret] = [s for a in self._instances.values() for s in a.secrets]
        # the destinations whose jobs the delivery lane sends on its event loop (Action.sends_on_loop)
        self.on_loop = frozenset(destination for (_, destination), action in self._instances.items()
                                 if destination and action.sends_on_loop)

    def get(self, type_name: str, destination: str | None) -> Action:
        """The action for a job; PermanentError when the running config has no such destination."""
        action = self._instances.get((type_name, destination or ""))
        if action is None:
            where = f" for destination {destination!r}" if destination else ""
            raise PermanentError(f"no {type_name!r} action{where} in the running config")
        return action

    def destination_names(self) -> set[str]:
        """Every destination name jobs can carry ('' for the destination-less actions)."""
        return {destination for _, destination in self._instances}

    def destinations(self, type_name: str) -> list[str]:
        """Names of the configured destinations an action type can send to (for rule validation)."""
        return sorted(d for (t, d), _ in self._instances.items() if t == type_name and d)


def build_actions(destinations: Mapping[str, Mapping[str, Any]], context: ActionContext) -> ActionSet:
    """One Action per destination (by its `type`) plus the destination-less actions; ConfigError lists
    every problem of every destination."""
    by_type = {cls.destination_type: cls for cls in registry().values() if cls.destination_type}
    instances: dict[tuple[str, str], Action] = {
        (cls.name, ""): cls(None, None, context) for cls in registry().values() if not cls.destination_type}
    problems: list[str] = []
    for name, destination in destinations.items():
        kind = destination.get("type")
        cls = by_type.get(kind)
        if cls is None:
            line = line_of(destination, "type")
            problems.append(f"{context.source}:{line}: destinations.{name}.type: unknown type {kind!r}"
                            f"{suggest(str(kind), sorted(by_type))}; expected one of: {', '.join(sorted(by_type))}")
            continue
        try:
            instances[(cls.name, name)] = cls(name, destination, context)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return ActionSet(instances)
