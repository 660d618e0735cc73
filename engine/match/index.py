"""Rules indexed by event URI, so an event is checked only against the rules that can match it.

A rule's `event:` selectors are exact URIs (from aliases or given in full), channel wildcards (`login.*`)
or `*`. Candidates for a URI = exact + its channel + `*`, in file order, computed once per URI and cached
(bounded, since URIs come from the outside).
"""

from __future__ import annotations

from typing import Protocol, Sequence

from engine.catalog import uri_to_alias

_CACHE_LIMIT = 4096
ANY = "*"


class Indexed(Protocol):
    selectors: tuple[tuple[str, str], ...]  # ("uri", URI) | ("channel", name) | ("any", "*")


def selector_keys(uri: str) -> list[tuple[str, str]]:
    """The selectors that match `uri`: its own, its channel's and `*`."""
    alias = uri_to_alias(uri)
    return [("uri", uri), ("any", ANY)] + ([("channel", alias.split(".", 1)[0])] if alias else [])


class RuleIndex:
    def __init__(self, rules: Sequence[Indexed]) -> None:
        self._order = {id(rule): position for position, rule in enumerate(rules)}
        self._by_key: dict[tuple[str, str], list[Indexed]] = {}
        for rule in rules:
            for selector in rule.selectors:
                self._by_key.setdefault(selector, []).append(rule)
        self._cache: dict[str, tuple[Indexed, ...]] = {}

    def candidates(self, uri: str) -> tuple[Indexed, ...]:
        found = self._cache.get(uri)
        if found is None:
            found = self._compute(uri)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[uri] = found
        return found

    def _compute(self, uri: str) -> tuple[Indexed, ...]:
        keys = selector_keys(uri)
        unique = {id(rule): rule for key in keys for rule in self._by_key.get(key, ())}
        return tuple(sorted(unique.values(), key=lambda rule: self._order[id(rule)]))
