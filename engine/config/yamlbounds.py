"""Bounds on a YAML document before it is built into Python objects, so a hostile or broken file (an
alias bomb, a deep nest, a huge file) is a clear ConfigError instead of a hang or gigabytes of memory.

Aliases are what makes YAML dangerous: `b: [*a, *a, ...]` nine levels deep is a few hundred bytes that
stand for a billion values. PyYAML shares aliased objects, so loading is cheap, but everything that walks
the result (rule compilation, validation, reloads) pays for the expansion. So the node graph is measured
as if every alias were expanded, in time linear in the composed document, and refused beyond the bounds.
"""

from __future__ import annotations

import yaml

MAX_FILE_BYTES = 8 * 1024 * 1024
"""A config or rule file larger than this is refused unread (10,000 rules take about 2.5 MB)."""
MAX_DEPTH = 64
"""Collections nested deeper than this are refused (real rule files need fewer than 15 levels)."""
MAX_EXPANSION = 10
"""Aliases may make the document at most this many times larger than it is written ..."""
EXPANSION_ALLOWANCE = 100_000
"""... or this many values, whichever is more, so small files may use anchors freely."""


def check_bounds(root: yaml.Node) -> str | None:
    """What is wrong with the document, or None. Walks each distinct node once (iteratively, so depth
    cannot overflow the stack): expanded size and depth are memoized per node."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            on_path.discard(key)
            if depth[key] > MAX_DEPTH:
                return _where(node, f"nested deeper than {MAX_DEPTH} levels")
            continue
        if key in size:
            continue
        if key in on_path:
            return _where(node, "an alias refers to a collection that contains it (a recursive alias)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)
    written = len(size)
    limit = max(EXPANSION_ALLOWANCE, MAX_EXPANSION * written)
    if size[id(root)] > limit:
        return _where(root, f"aliases expand this document to {size[id(root)]:,} values (at most {limit:,} "
                            f"allowed: {MAX_EXPANSION}x its {written:,} written values); is it an alias bomb?")
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _where(node: yaml.Node, message: str) -> str:
    return f"{node.start_mark.line + 1}: {message}"
