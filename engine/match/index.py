"""Rules indexed by event URI, so an event is checked only against the rules that can match it.

A rule's `event:` selectors are exact URIs (from aliases or given in full), channel wildcards (`login.*`)
or `*`. Candidates for a URI = exact + its channel + `*`, in file order, computed once per URI and cached
(bounded, since URIs come from the outside).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from engine import catalog
from engine.catalog import uri_to_alias
from engine.config.settings import suggest

_CACHE_LIMIT = 4096
ANY = "*"


class Indexed(Protocol):
    selectors: tuple[tuple[str, str], ...]  # ("uri", URI) | ("channel", name) | ("any", "*")


def selector_keys(uri: str) -> list[tuple[str, str]]:
    """The selectors that match `uri`: its own, its channel's and `*`."""
    alias = uri_to_alias(uri)
    return [("uri", uri), ("any", ANY)] + ([("channel", alias.split(".", 1)[0])] if alias else [])


def parse_selector(value: Any) -> tuple[str, str]:
    """One `event:` entry -> an index key; ValueError with a suggestion when unknown."""
    aliases = list(catalog.entries())
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected an event alias like login.loginFailed, got {value!r}")
    if value == ANY:
        return "any", ANY
    if "://" in value:
        return "uri", value
    channels = sorted({a.split(".", 1)[0] for a in aliases})
    if value.endswith(".*"):
        channel = value[:-2]
        if channel not in channels:
            raise ValueError(f"unknown channel '{channel}'{suggest(channel, channels)}; "
                             f"channels: {', '.join(channels)}")
        return "channel", channel
    if value not in aliases:
        raise ValueError(f"unknown event '{value}'{suggest(value, aliases)}; `idhooks catalog` lists the aliases")
    return "uri", catalog.alias_to_uri(value)


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
