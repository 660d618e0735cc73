"""Small MaxMind DB files written for the tests (mmdb-writer): the operator-file path of IP enrichment
without shipping anyone's database."""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter, MmdbU32
from netaddr import IPSet

COUNTRIES = {"8.8.8.0/24": ("NL", "Netherlands (test file)"), "2001:4860::/32": ("DE", "Germany (test file)")}
ASNS = {"8.8.8.0/24": (15169, "GOOGLE"), "1.1.1.0/24": (13335, "CLOUDFLARENET"),
        "81.2.69.0/24": (20712, "Andrews & Arnold Ltd")}


def country_file(path: Path, networks: dict[str, tuple[str, str]] | None = None) -> Path:
    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-Country", ipv4_compatible=True)
    for network, (code, name) in (networks or COUNTRIES).items():
        writer.insert_network(IPSet([network]), {"country": {"iso_code": code, "names": {"en": name}}})
    writer.to_db_file(str(path))
    return path


def asn_file(path: Path, networks: dict[str, tuple[int, str]] | None = None) -> Path:
    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True)
    for network, (number, org) in (networks or ASNS).items():
        writer.insert_network(IPSet([network]), {"autonomous_system_number": MmdbU32(number),
                                                 "autonomous_system_organization": org})
    writer.to_db_file(str(path))
    return path
