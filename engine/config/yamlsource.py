"""YAML loading that remembers line numbers, so errors can say `file:line:`.

Mappings load as `LineDict` (a dict with `.line` and `.key_lines`), sequences as `LineList` (a list with
`.line` and `.item_lines`). Both behave as plain dicts/lists everywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from engine.config.yamlbounds import MAX_FILE_BYTES, check_bounds
from engine.errors import ConfigError


class LineDict(dict):
    """A dict that knows the line it starts on and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: Any) -> int:
        return getattr(self, "key_lines", {}).get(key, self.line)


class LineList(list):
    """A list that knows the line it starts on and the line of each item (1-based)."""

    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        lines = getattr(self, "item_lines", [])
        return lines[index] if 0 <= index < len(lines) else self.line


_SafeBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML has it: about 10x faster, which is what makes loading 10,000 rules take
seconds instead of tens of seconds; the pure-Python SafeLoader otherwise. Both keep line marks."""


class _Loader(_SafeBase):  # type: ignore[valid-type, misc]  # a base chosen at import (C or Python)
    """SafeLoader that builds LineDict/LineList; no Python object tags, ever."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_text(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error, or a document beyond the bounds of engine/config/yamlbounds.py (an
    alias bomb, a deep nest, a huge text), becomes a ConfigError naming `source:line`."""
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(f"{source}: {len(text):,} characters, more than the {MAX_FILE_BYTES:,} a YAML file "
                          "may have: split it into several files")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        problem = check_bounds(node) if node is not None else None
        if problem is not None:
            raise ConfigError(f"{source}:{problem}")
        return loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError(f"{source}:{line}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def load_yaml_file(path: Path, display: str | None = None) -> Any:
    """Read and parse a YAML file; unreadable or oversized files are ConfigErrors too (the size is checked
    before reading, so a huge file costs no memory)."""
    source = display or str(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{source}: {size:,} bytes, more than the {MAX_FILE_BYTES:,} a YAML file may have: "
                              "split it into several files")
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    return load_yaml_text(text, source)
