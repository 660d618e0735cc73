"""What conditions and templates see of one event: built once per (envelope, URI), parts built lazily.

Claims arrive as `[{uri, value}]` lists; conditions look them up by full URI, templates by short name
(`claims.username` for `http://wso2.org/claims/username`) or full URI (`claims['urn:...']`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from engine.catalog import uri_to_alias
from engine.match.enrich import Enricher, bundled
from engine.verify.envelope import Envelope

WSO2_CLAIM_PREFIX = "http://wso2.org/claims/"
_CLAIM_LISTS = ("claims", "addedClaims", "updatedClaims")

TEMPLATE_NAMES = ("event", "envelope", "uri", "type", "rule", "claims", "user_id", "username", "ip",
                  "occurred_at", "geo")
"""Every name a template may use; any other name is a load error."""


def claim_uri(name: str) -> str:
    """The full URI of a claim given by short name (`username`) or full URI."""
    return name if ":" in name else WSO2_CLAIM_PREFIX + name


def collect_claims(body: dict[str, Any]) -> dict[str, Any]:
    """Full claim URI -> value from `user.claims`, then `addedClaims`/`updatedClaims` (profile updates:
    the values after the change)."""
    user = body.get("user")
    found: dict[str, Any] = {}
    if not isinstance(user, dict):
        return found
    for key in _CLAIM_LISTS:
        items = user.get(key)
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and isinstance(item.get("uri"), str) and item.get("value") is not None:
                found[item["uri"]] = item["value"]
    return found


class EvalContext:
    """One event as the evaluator sees it. `seen` (leaf -> outcomes) is set only when measuring coverage;
    `found` holds the values conditions looked up in this event (subject -> values), shared by every rule."""

    __slots__ = ("envelope", "uri", "body", "webhook", "seen", "found", "enricher", "_claims", "_template", "_geo")

    def __init__(self, envelope: Envelope, uri: str, webhook: str, seen: dict | None = None,
                 enricher: Enricher | None = None) -> None:
        self.envelope = envelope
        self.uri = uri
        body = envelope.events.get(uri)
        self.body: dict[str, Any] = body if isinstance(body, dict) else {}
        self.webhook = webhook
        self.seen = seen
        self.found: dict[str, list[Any]] = {}
        self.enricher = enricher
        self._claims: dict[str, Any] | None = None
        self._template: dict[str, Any] | None = None
        self._geo: dict[str, Any] | None = None

    @property
    def claims(self) -> dict[str, Any]:
        if self._claims is None:
            self._claims = collect_claims(self.body)
        return self._claims

    @property
    def geo(self) -> dict[str, Any]:
        """The IP enrichment of `initiatorIpAddress` (engine/match/enrich.py), looked up once per event."""
        if self._geo is None:
            self._geo = (self.enricher or bundled()).geo(self.body.get("initiatorIpAddress"))
        return self._geo

    def template_context(self, rule: dict[str, Any]) -> dict[str, Any]:
        """The names templates render with; the event-wide part is built once, `rule` per rule."""
        if self._template is None:
            self._template = self._build_template_context()
        return {**self._template, "rule": rule}

    def _build_template_context(self) -> dict[str, Any]:
        claims = self.claims
        short = {uri[len(WSO2_CLAIM_PREFIX):]: value for uri, value in claims.items()
                 if uri.startswith(WSO2_CLAIM_PREFIX)}
        user = self.body.get("user") if isinstance(self.body.get("user"), dict) else {}
        return {
            "event": self.body,
            "envelope": self.envelope.claims,
            "uri": self.uri,
            "type": uri_to_alias(self.uri) or self.uri,
            "claims": {**claims, **short},
            "user_id": user.get("id", ""),
            "username": short.get("username", ""),
            "ip": self.body.get("initiatorIpAddress", ""),
            "occurred_at": datetime.fromtimestamp(self.envelope.iat_ms / 1000, tz=timezone.utc),
            "geo": self.geo,
        }
