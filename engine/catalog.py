"""The built-in event catalog: one realistic sample per WSO2 event type, copied from the shared samples, and
variants of those samples as they also arrive on the wire.

Alias = `{channel}.{eventType}`; URI = `https://schemas.identity.wso2.org/events/{channel}/event-type/{eventType}`.
A variant is named `{alias}/{variant}` (file `catalog/variants/{alias}/{variant}.json`): the same event
with optional fields left out (every body field is optional on the wire), so rule tests can prove a rule
fires on every realistic form of its event, not only on the fullest one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.verify.envelope import EVENT_URI_PREFIX

CATALOG_DIR = Path(__file__).parent / "catalog"

DESCRIPTIONS = {
    "consent-purpose.purposeVersionAdded": "a new version of a consent purpose was added",
    "consent.consentAdded": "a user gave consent",
    "consent.consentRevoked": "a user revoked consent",
    "credential.credentialUpdated": "a password or passkey was changed or reset",
    "login.loginFailed": "an authentication step failed",
    "login.loginSuccess": "a user signed in",
    "registration.registrationFailed": "a self-registration or invitation failed",
    "registration.registrationSuccess": "a user registered or was provisioned",
    "role.roleCreated": "a role was created",
    "role.roleDeleted": "a role was deleted",
    "role.roleGroupsUpdated": "groups were assigned to or removed from a role",
    "role.roleIdpGroupsUpdated": "identity provider groups of a role changed",
    "role.roleMetaUpdated": "a role was renamed or its metadata changed",
    "role.rolePermissionsUpdated": "permissions of a role changed",
    "role.roleUsersUpdated": "users were assigned to or removed from a role",
    "session.sessionEstablished": "a session was created",
    "session.sessionPresented": "an existing session was used",
    "session.sessionRevoked": "sessions were terminated",
    "token.accessTokenIssued": "an access token was issued",
    "token.accessTokenRevoked": "access tokens were revoked",
    "user.userAccountLocked": "a user account was locked",
    "user.userAccountUnlocked": "a user account was unlocked",
    "user.userCreated": "a user was created",
    "user.userDeleted": "a user was deleted",
    "user.userDisabled": "a user account was disabled",
    "user.userEnabled": "a user account was enabled",
    "user.userProfileUpdated": "user claims were added, updated or removed",
}


VARIANT_DESCRIPTIONS = {
    "no-flow-fields": "without the optional flow fields initiatorType, action, credentialType and "
                      "initiatorIpAddress",
}


@dataclass(frozen=True)
class CatalogEntry:
    alias: str
    uri: str
    description: str
    path: Path

    @property
    def channel(self) -> str:
        return self.alias.split(".", 1)[0]

    def sample(self) -> dict[str, Any]:
        """A fresh copy of the sample Security Event Token."""
        return json.loads(self.path.read_text(encoding="utf-8"))


def alias_to_uri(alias: str) -> str:
    channel, event_type = alias.split(".", 1)
    return f"{EVENT_URI_PREFIX}{channel}/event-type/{event_type}"


def uri_to_alias(uri: str) -> str | None:
    """`channel.eventType` for a WSO2 profile URI, None for anything else."""
    if not uri.startswith(EVENT_URI_PREFIX):
        return None
    parts = uri[len(EVENT_URI_PREFIX):].split("/")
    if len(parts) == 3 and parts[1] == "event-type" and parts[0] and parts[2]:
        return f"{parts[0]}.{parts[2]}"
    return None


@lru_cache(maxsize=1)
def entries() -> dict[str, CatalogEntry]:
    """alias -> entry, sorted by alias."""
    found = {}
    for path in sorted(CATALOG_DIR.glob("*.json")):
        alias = path.stem
        found[alias] = CatalogEntry(alias, alias_to_uri(alias), DESCRIPTIONS.get(alias, ""), path)
    return found


@lru_cache(maxsize=1)
def variants() -> dict[str, CatalogEntry]:
    """`alias/variant` -> entry (its alias, URI and the variant's description), sorted."""
    found = {}
    for path in sorted((CATALOG_DIR / "variants").glob("*/*.json")):
        alias, variant = path.parent.name, path.stem
        if alias in entries():
            found[f"{alias}/{variant}"] = CatalogEntry(alias, alias_to_uri(alias),
                                                       VARIANT_DESCRIPTIONS.get(variant, ""), path)
    return found


def variants_of(alias: str) -> list[str]:
    """The `alias/variant` names of one event type."""
    return [name for name, entry in variants().items() if entry.alias == alias]


def sample(name: str) -> dict[str, Any]:
    """A fresh copy of the sample of an alias or an `alias/variant`; KeyError for an unknown name."""
    entry = entries().get(name) or variants().get(name)
    if entry is None:
        raise KeyError(name)
    return entry.sample()


def sample_names() -> list[str]:
    """Every name `sample()` takes: the aliases, then the variants."""
    return list(entries()) + list(variants())
