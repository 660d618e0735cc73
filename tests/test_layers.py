"""Dependencies point down the pipeline: the import graph is checked, so a cycle cannot creep back in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports (at any depth, including imports inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


FORBIDDEN = [
    ("engine/store", ("engine.match", "engine.deliver", "engine.receive", "engine.offline", "engine.cli",
                      "engine.server", "actions")),
    ("engine/match/stateful", ("engine.match.processor", "engine.deliver", "engine.server")),
    ("engine/verify", ("engine.store", "engine.match", "engine.deliver", "engine.receive", "actions")),
    ("engine/config", ("engine.store", "engine.match", "engine.deliver", "engine.receive", "actions")),
    ("engine/offline", ("engine.store.sqlite", "engine.store.redis", "engine.server")),
]


@pytest.mark.parametrize("folder,banned", FORBIDDEN, ids=[f for f, _ in FORBIDDEN])
def test_a_layer_does_not_import_the_layers_above_it(folder: str, banned: tuple[str, ...]) -> None:
    wrong = [f"{path.relative_to(ROOT)} imports {name}" for path in modules(folder) for name in imports_of(path)
             if name.startswith(banned)]
    assert wrong == []


ACTIONS_MAY_USE = ("engine.errors", "engine.secrets", "engine.config")
"""Plus `engine` itself (its __version__)."""


def test_actions_use_only_the_low_level_engine_helpers() -> None:
    """actions/ are plugins the engine loads: they may use errors, secrets and config readers, nothing that
    would make engine and actions import each other."""
    wrong = [f"{path.relative_to(ROOT)} imports {name}" for path in modules("actions") for name in imports_of(path)
             if name.startswith("engine.") and not name.startswith(ACTIONS_MAY_USE)]
    assert wrong == []


def test_every_store_backend_is_one_module_named_in_one_table(tmp_path: Path) -> None:
    """docs/architecture.md: a store backend is a module with open_backend(), listed in STORE_BACKENDS."""
    import importlib

    from engine.config.settings import StoreConfig
    from engine.config.storeurl import STORE_BACKENDS
    from engine.store import open_store

    for module in STORE_BACKENDS.values():
        assert callable(importlib.import_module(module).open_backend), module
    store = open_store(StoreConfig(url=f"sqlite:///{tmp_path / 'x.db'}"))
    try:
        assert store.schema_version() >= 1
    finally:
        store.close()
