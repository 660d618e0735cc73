"""Action plugins: one module per action type (see actions/base.py). `registry()` discovers them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import lru_cache

from actions.base import Action


@lru_cache(maxsize=1)
def registry() -> dict[str, type[Action]]:
    """YAML name -> Action class, from every module of this package."""
    found: dict[str, type[Action]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_") or module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Action) and cls is not Action and cls.__module__ == module.__name__:
                found[cls.name] = cls
    return found
