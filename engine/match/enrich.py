"""IP enrichment: `geo.country`, `geo.country_name`, `geo.asn` and `geo.as_org` of an event's
`initiatorIpAddress`, usable wherever a rule reads a path (when, group_by, distinct, new_value.of, templates).

Where the data comes from (docs/rules.md, "IP enrichment"):
- out of the box, the country from the `iptocc` package (the Regional Internet Registries' delegation
  files, compiled into the package; MIT/Apache-2.0) and its English name from `iso3166` (MIT). No ASN data
  ships with any well-kept package, so `geo.asn` / `geo.as_org` stay empty until an ASN file is configured;
- an operator's MaxMind / DB-IP `.mmdb` files (`enrich.geoip_file`, `enrich.asn_file` in config.yaml)
  override the bundled data, read with the `maxminddb` package.

Addresses that are not globally routed (private, loopback, link-local, documentation, reserved) and text
that is not an address enrich to empty values, never to an error: an attacker controls this field.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

GEO_FIELDS = ("country", "country_name", "asn", "as_org")
MAX_ADDRESS_LENGTH = 64
"""Longer text is not an IP address (the longest IPv6 text form with a zone is well below this)."""
CACHE_SIZE = 8192
"""Distinct addresses whose enrichment is kept in memory (a bounded LRU: attackers choose the addresses)."""
_TEXT_LIMIT = 200


def empty() -> dict[str, Any]:
    """The enrichment of an address nothing is known about."""
    return {"country": "", "country_name": "", "asn": None, "as_org": ""}


def _open(path: Path | None, key: str) -> Any:
    if path is None:
        return None
    import maxminddb  # an operator file only: the bundled data needs no reader
    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ConfigError(f"enrich.{key}: cannot read a MaxMind DB (.mmdb) file at {path}: {exc}") from None


def _text(value: Any) -> str:
    return value[:_TEXT_LIMIT] if isinstance(value, str) else ""


class Enricher:
    """Looks up an address in the operator's files first, then in the bundled country data."""

    def __init__(self, geoip_file: Path | None = None, asn_file: Path | None = None) -> None:
        self.geoip_file, self.asn_file = geoip_file, asn_file
        self._country_db = _open(geoip_file, "geoip_file")
        self._asn_db = _open(asn_file, "asn_file")
        self.lookup = lru_cache(maxsize=CACHE_SIZE)(self._lookup)

    def close(self) -> None:
        for db in (self._country_db, self._asn_db):
            if db is not None:
                db.close()

    def geo(self, address: Any) -> dict[str, Any]:
        """The enrichment of `address` (any value from an event); a fresh dict the caller may keep."""
        if not isinstance(address, str) or not address or len(address) > MAX_ADDRESS_LENGTH:
            return empty()
        return dict(self.lookup(address))

    def _lookup(self, text: str) -> dict[str, Any]:
        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            return empty()
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            return empty()
        found = empty()
        found["country"], found["country_name"] = self._country(address)
        found["asn"], found["as_org"] = self._asn(address)
        return found

    def _country(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, str]:
        if self._country_db is not None:
            record = self._country_db.get(str(address))
            country = record.get("country") or record.get("registered_country") if isinstance(record, dict) else None
            if isinstance(country, dict) and isinstance(country.get("iso_code"), str):
                names = country.get("names")
                name = names.get("en") if isinstance(names, dict) else None
                return _text(country["iso_code"]), _text(name) or country_name(country["iso_code"])
            return "", ""
        return bundled_country(str(address))

    def _asn(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int | None, str]:
        if self._asn_db is None:
            return None, ""
        record = self._asn_db.get(str(address))
        if not isinstance(record, dict):
            return None, ""
        number = record.get("autonomous_system_number")
        number = number if isinstance(number, int) and not isinstance(number, bool) and number > 0 else None
        return number, _text(record.get("autonomous_system_organization"))


def bundled_country(address: str) -> tuple[str, str]:
    """(ISO 3166-1 alpha-2 code, English name) from the data bundled with the iptocc package."""
    import iptocc
    try:
        code = iptocc.country_code(address)
    except (ValueError, TypeError):
        return "", ""
    if not isinstance(code, str) or len(code) != 2:
        return "", ""
    return code, country_name(code)


@lru_cache(maxsize=512)
def country_name(code: str) -> str:
    """The English short name of an ISO 3166-1 alpha-2 code ('' when unknown)."""
    import iso3166
    country = iso3166.countries_by_alpha2.get(code.upper())
    return country.apolitical_name if country is not None else ""


class Pinned:
    """Enrichment fixed per address (rule tests' `geo:`), falling back to another enricher for the rest."""

    def __init__(self, table: dict[str, dict[str, Any]], fallback: Any) -> None:
        self.table, self.fallback = table, fallback

    def geo(self, address: Any) -> dict[str, Any]:
        if isinstance(address, str) and address in self.table:
            found = {**empty(), **self.table[address]}
            found["country_name"] = found["country_name"] or country_name(found["country"])
            return found
        return self.fallback.geo(address)


_BUNDLED: Enricher | None = None


def bundled() -> Enricher:
    """The enricher with only the bundled data (rules loaded without a config, tests, benchmarks)."""
    global _BUNDLED
    if _BUNDLED is None:
        _BUNDLED = Enricher()
    return _BUNDLED
