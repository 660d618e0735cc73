"""PII masking for viewers (`api.mask`). A masked field is named like a template path: `claims.emailaddress`
is the WSO2 claim of that short name (in user.claims, addedClaims or updatedClaims), anything else a dotted
path into the event body (`initiatorIpAddress`, `user.id`). The values found there are then replaced wherever
they appear in what is shown (decision values, rendered actions, job payloads), not only at their path."""

from __future__ import annotations

from typing import Any, Iterable

from engine.match.context import claim_uri, collect_claims


MIN_SUBSTRING = 4


def mask_value(value: str) -> str:
    """`jane.doe@example.com` -> `j***@example.com`; anything else keeps its first character."""
    local, at, domain = value.partition("@")
    if at and local:
        return f"{local[0]}***@{domain}"
    return f"{value[:1]}***" if value else value


def _at_path(body: Any, path: str) -> Any:
    node = body
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def masked_values(bodies: Iterable[Any], fields: Iterable[str]) -> dict[str, str]:
    """Every value of the masked `fields` in the event bodies -> its masked form."""
    found: dict[str, str] = {}
    for body in bodies:
        if not isinstance(body, dict):
            continue
        claims = collect_claims(body)
        for field in fields:
            if field.startswith("claims."):
                value = claims.get(claim_uri(field[len("claims."):]))
            else:
                value = _at_path(body, field)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value):
                found[str(value)] = mask_value(str(value))
    return found


def redact(value: Any, replacements: dict[str, str]) -> Any:
    """`value` (JSON-like) with every occurrence of a replacement key inside strings replaced."""
    if not replacements:
        return value
    if isinstance(value, str):
        if value in replacements:
            return replacements[value]
        for plain in sorted(replacements, key=len, reverse=True):
            if len(plain) >= MIN_SUBSTRING and plain in value:  # short values only where they are whole
                value = value.replace(plain, replacements[plain])
        return value
    if isinstance(value, dict):
        return {redact(k, replacements): redact(v, replacements) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, replacements) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and str(value) in replacements:
        return replacements[str(value)]
    return value

