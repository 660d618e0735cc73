"""IP enrichment: geo.country / geo.country_name / geo.asn / geo.as_org from the bundled data and from
operator .mmdb files, usable in when, group_by, distinct and templates; garbage enriches to empty values."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.config.settings import load_config
from engine.match.enrich import Enricher, bundled, empty
from engine.match.loader import load_for_config
from engine.match.stateful.evaluator import StatefulRules
from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config
from tests.geodata import asn_file, country_file
from tests.rules_support import decide, envelope, load, problems, write_rules

HOSTILE = ["", " ", "not an ip", "999.1.1.1", "1.2.3", "8.8.8.8\r\nX-Evil: 1", "8.8.8.8/24", "x" * 100_000,
           "\ud800", "<script>alert(1)</script>", "NaN", "Infinity", "::1", "0.0.0.0", "255.255.255.255",
           "fe80::1%eth0", "../../etc/passwd", None, 8, 8.8, True, ["8.8.8.8"], {"ip": "8.8.8.8"}]


def test_bundled_data_gives_the_country_of_public_addresses() -> None:
    geo = bundled().geo("8.8.8.8")
    assert geo == {"country": "US", "country_name": "United States of America", "asn": None, "as_org": ""}
    assert bundled().geo("2001:4860:4860::8888")["country"] == "US"
    assert bundled().geo("::ffff:8.8.8.8")["country"] == "US"  # IPv4-mapped IPv6


@pytest.mark.parametrize("address", ["10.1.2.3", "172.16.0.9", "192.168.1.1", "127.0.0.1", "169.254.1.1",
                                     "192.0.2.1", "198.51.100.23", "203.0.113.10", "100.64.0.1", "224.0.0.1",
                                     "2001:db8::1", "fc00::1", "::1"])
def test_private_loopback_and_documentation_addresses_enrich_to_empty_values(address: str) -> None:
    assert bundled().geo(address) == empty()


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_garbage_enriches_to_empty_values_never_an_error(value: object) -> None:
    assert bundled().geo(value) == empty()


def test_operator_files_override_the_bundled_data(tmp_path: Path) -> None:
    enricher = Enricher(country_file(tmp_path / "c.mmdb"), asn_file(tmp_path / "a.mmdb"))
    assert enricher.geo("8.8.8.8") == {"country": "NL", "country_name": "Netherlands (test file)",
                                       "asn": 15169, "as_org": "GOOGLE"}
    # the operator's country file does not know 1.1.1.1: empty, not the bundled answer (the file decides)
    assert enricher.geo("1.1.1.1") == {"country": "", "country_name": "", "asn": 13335, "as_org": "CLOUDFLARENET"}
    assert enricher.geo("10.0.0.1") == empty()


def test_an_asn_file_alone_keeps_the_bundled_countries(tmp_path: Path) -> None:
    enricher = Enricher(asn_file=asn_file(tmp_path / "a.mmdb"))
    assert enricher.geo("8.8.8.8") == {"country": "US", "country_name": "United States of America",
                                       "asn": 15169, "as_org": "GOOGLE"}


def test_the_lookup_cache_is_bounded(tmp_path: Path) -> None:
    enricher = Enricher()
    for i in range(10_000):
        enricher.geo(f"8.{i // 256}.{i % 256}.1")
    assert enricher.lookup.cache_info().currsize <= 8192


def _project(tmp_path: Path, enrich: str, rules: str) -> Path:
    config = basic_config(tmp_path, extra=enrich)
    write_rules(tmp_path / "rules", rules)
    return config


def test_config_enrich_files_reach_the_rules(tmp_path: Path) -> None:
    country_file(tmp_path / "c.mmdb")
    asn_file(tmp_path / "a.mmdb")
    config = _project(tmp_path, "enrich: {geoip_file: c.mmdb, asn_file: a.mmdb}", """
        rules:
          - id: google-from-nl
            event: login.loginSuccess
            when: {all: [{path: geo.country, equals: NL}, {path: geo.asn, equals: 15169}]}
            actions: [{log: {message: "{{ geo.as_org }} AS{{ geo.asn }} in {{ geo.country_name }}"}}]
    """)
    ruleset = load_for_config(load_config(config))
    decision = decide(ruleset, envelope("login.loginSuccess", initiatorIpAddress="8.8.8.8"))["google-from-nl"]
    assert decision.matched and decision.actions[0].fields["message"] == \
        "GOOGLE AS15169 in Netherlands (test file)"


def test_a_file_that_is_not_a_maxmind_db_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "c.mmdb").write_text("not a database")
    config = _project(tmp_path, "enrich: {geoip_file: c.mmdb}", "rules: []\n")
    with pytest.raises(ConfigError) as caught:
        load_for_config(load_config(config))
    assert caught.value.problems[0].startswith(f"{config}: enrich.geoip_file: cannot read a MaxMind DB (.mmdb) "
                                               f"file at {tmp_path / 'c.mmdb'}: ")


def test_a_missing_enrich_file_and_unknown_keys_are_config_errors(tmp_path: Path) -> None:
    config = _project(tmp_path, "enrich: {geoip_file: nowhere.mmdb, asn_fil: x}", "rules: []\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    text = "\n".join(caught.value.problems)
    assert "enrich.asn_fil: unknown key (did you mean 'asn_file'?)" in text
    assert f"enrich.geoip_file: no such file: {tmp_path / 'nowhere.mmdb'}" in text


def test_geo_names_in_when_and_templates_with_the_bundled_data(tmp_path: Path) -> None:
    ruleset = load(tmp_path, """
        rules:
          - id: outside-allowed
            event: login.loginSuccess
            when: {path: geo.country, not_in: [NL, BE]}
            actions: [{log: {message: "{{ username }} from {{ geo.country }} ({{ geo.country_name }}) {{ ip }}"}}]
    """)
    hit = decide(ruleset, envelope("login.loginSuccess", initiatorIpAddress="8.8.8.8"))["outside-allowed"]
    assert hit.matched
    assert hit.actions[0].fields["message"] == \
        "jane.doe@example.com from US (United States of America) 8.8.8.8"
    # a documentation address has no country: not_in needs a value, so the rule does not fire
    miss = decide(ruleset, envelope("login.loginSuccess"))["outside-allowed"]
    assert not miss.matched and miss.actual is None


def test_geo_names_group_threshold_rules(tmp_path: Path) -> None:
    ruleset = load(tmp_path, """
        rules:
          - id: failures-per-country
            event: login.loginFailed
            threshold: {count: 2, within: 10m, group_by: [geo.country], distinct: geo.country_name}
            actions: [{log: {message: "{{ group[0] }}"}}]
    """)
    store = SQLiteStore(tmp_path / "s.db")
    rules = StatefulRules(ruleset, store)
    env = envelope("login.loginFailed", initiatorIpAddress="8.8.8.8")
    first = rules.evaluate(env, env.uris[0], "asgardeo", now=env.iat_ms / 1000)[0]
    assert first.failed == "threshold: count 1 of 2 within 10m"
    private = envelope("login.loginFailed", initiatorIpAddress="10.0.0.1")
    missing = rules.evaluate(private, private.uris[0], "asgardeo", now=private.iat_ms / 1000)[0]
    assert missing.failed == "threshold: not counted: geo.country is missing in this event"
    store.close()


def test_an_unknown_enrichment_name_is_a_load_error_with_a_suggestion(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        rules:
          - id: r
            event: login.loginSuccess
            when: {path: geo.contry, equals: NL}
            threshold: {count: 2, within: 1m, group_by: [geo.as]}
            actions: [{log: {message: "{{ geo.country }}"}}]
    """)
    assert found == [
        "rules.yaml:4: rule 'r': when.path: unknown enrichment 'geo.contry' (did you mean 'geo.country'?); "
        "expected one of: geo.country, geo.country_name, geo.asn, geo.as_org",
        "rules.yaml:5: rule 'r': threshold.group_by[0]: unknown enrichment 'geo.as' (did you mean 'geo.asn'?); "
        "expected one of: geo.country, geo.country_name, geo.asn, geo.as_org"]
