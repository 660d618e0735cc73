"""Shared by the output-escaping tests: attacker-chosen strings, the event fields they are put into, and a
rule set compiled once per test so each example only renders and sends.

A hostile value goes into one field of a genuine `login.loginFailed` event; the rule under test renders it
through the real template compiler (with the field's channel escape) and the real action sends it to a
real loopback peer (Slack contract, aiosmtpd, HTTP target).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from engine import catalog
from engine.match import RuleSet, load_ruleset
from engine.verify.envelope import envelope_from_claims
from tests.rules_support import write_rules

# Fixed inputs every run (as tests/test_fuzz.py does); new draws only with IDHOOKS_FUZZ_EXPLORE=1.
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

KNOWN_ATTACKS = [
    "<!channel> <https://evil.example|Reset your password>", "<!here>", "<!everyone>", "<@U024BE7LH>",
    "<#C024BE7LR|general>", "<!subteam^SAZ94GDB8>", "&lt;!channel&gt;", "&amp;", "a & b < c > d",
    "<script>alert(1)</script>", '<a href="https://evil.example">x</a>', "<img src=x onerror=alert(1)>",
    "\"'><svg/onload=alert(1)>", "\r\nBcc: victim@example.com", "x\r\n\r\n<html>", "\n", "\r",
    "abc?admin=1&x=", "a#frag", "abc/delete", "%252e%252e/x", "%2e%2e", "..", ".", "../../admin", "..\\x",
    "%2F..%2F", "http://localhost:6379/", "//evil.example/x", "https://evil.example", "@evil.example",
    "\ud800", "a\udc00b", "{{ 7 * 7 }}", "{% raw %}", "\x00\x1b[31m", "`*_~", "\u202e\u200b", "",
]
PIECES = st.sampled_from(["<", ">", "&", "!", "@", "#", "|", "/", "\\", "?", "=", "%", "%25", "%2e", ".", "..",
                          "\r", "\n", "\ud800", ":", "amp;", "lt;", "<!channel>", "http://", " "])
HOSTILE = st.one_of(
    st.sampled_from(KNOWN_ATTACKS),
    st.lists(PIECES | st.text(max_size=4), max_size=12).map("".join),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=40),
    st.tuples(st.sampled_from(KNOWN_ATTACKS[:12]), st.integers(500, 20_000)).map(lambda t: t[0] * (t[1] // 50)),
)


def _set_claim(body: dict, value: str) -> None:
    body["user"]["claims"][0]["value"] = value


FIELDS: dict[str, Callable[[dict, str], None]] = {
    "username": _set_claim,
    "application": lambda body, v: body["application"].__setitem__("name", v),
    "reason": lambda body, v: body["reason"].__setitem__("description", v),
    "user_id": lambda body, v: body["user"].__setitem__("id", v),
    "ip": lambda body, v: body.__setitem__("initiatorIpAddress", v),
    "tenant": lambda body, v: body["tenant"].__setitem__("name", v),
}
"""Every field a message template below reads, by name; each puts a value into a loginFailed body."""

_SAMPLE = catalog.entries()["login.loginFailed"].sample()


def hostile_event(field: str, value: str) -> dict[str, Any]:
    """The catalog loginFailed with `value` in `field` (the other fields stay genuine)."""
    event = copy.deepcopy(_SAMPLE)
    body = next(iter(event["events"].values()))
    body["user"]["id"] = "7c1e4b2a"
    FIELDS[field](body, value)
    return event


def genuine_values() -> dict[str, str]:
    """The values the template fields have in the genuine sample (for the expected text)."""
    return {"username": "jane.doe@example.com", "application": "Customer Portal",
            "reason": "User authentication failed due to invalid credentials", "user_id": "7c1e4b2a",
            "ip": "198.51.100.23", "tenant": "acme"}


def as_sent(value: str) -> str:
    """What rendering keeps of a value: everything, except that a lone surrogate becomes U+FFFD."""
    return re.sub("[\ud800-\udfff]", "\ufffd", value)


def compile_rule(folder: Path, action: str, destinations: dict[str, dict[str, Any]]) -> RuleSet:
    """A one-rule set named `hostile` for every loginFailed, with `action` (YAML of one action item)."""
    write_rules(folder, "rules:\n  - id: hostile\n    event: login.loginFailed\n    actions:\n" + action)
    return load_ruleset([folder], destinations=destinations, webhooks=["asgardeo"])


def render(ruleset: RuleSet, event: dict[str, Any]) -> dict[str, Any]:
    """The rendered fields of the rule's one action for `event` (a render error fails the test)."""
    envelope = envelope_from_claims(event)
    [decision] = [d for uri in envelope.uris for d in ruleset.evaluate(envelope, uri, "asgardeo")]
    assert decision.matched and not decision.errors, decision
    return decision.actions[0].fields
