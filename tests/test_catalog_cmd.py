"""`idhooks catalog`: every built-in event type with alias, URI and description, as text and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from engine import catalog
from tests.conftest import ROOT


def run_catalog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "catalog", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=30)


def test_json_lists_every_event_type_of_the_wso2_profile() -> None:
    result = run_catalog("--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert len(listed) == len(catalog.entries()) == 27
    assert listed[[e["alias"] for e in listed].index("login.loginFailed")] == {
        "alias": "login.loginFailed",
        "uri": "https://schemas.identity.wso2.org/events/login/event-type/loginFailed",
        "description": "an authentication step failed",
        "variants": ["login.loginFailed/no-flow-fields"],
    }
    assert all(entry["description"] for entry in listed)


def test_text_has_one_line_per_event_type() -> None:
    result = run_catalog()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ALIAS", "URI", "DESCRIPTION"]
    assert len(lines) == 1 + len(catalog.entries()) + 2 + len(catalog.variants())
    assert lines[1 + len(catalog.entries()) + 1].split() == ["VARIANT", "DESCRIPTION"]
    row = next(line for line in lines if line.startswith("login.loginFailed/no-flow-fields "))
    assert row.split(maxsplit=1)[1] == ("without the optional flow fields initiatorType, action, credentialType and "
                                        "initiatorIpAddress")
    row = next(line for line in lines if line.startswith("user.userDeleted "))
    assert row.split(maxsplit=2) == ["user.userDeleted",
                                     "https://schemas.identity.wso2.org/events/user/event-type/userDeleted",
                                     "a user was deleted"]


def test_an_alias_prints_its_sample_event() -> None:
    result = run_catalog("user.userDeleted")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == catalog.entries()["user.userDeleted"].sample()


def test_a_variant_prints_its_sample_event_without_the_optional_fields() -> None:
    result = run_catalog("login.loginFailed/no-flow-fields")
    assert result.returncode == 0, result.stderr
    body = next(iter(json.loads(result.stdout)["events"].values()))
    genuine = next(iter(catalog.entries()["login.loginFailed"].sample()["events"].values()))
    assert {k: v for k, v in genuine.items() if k not in ("initiatorType", "action", "initiatorIpAddress")} == body


def test_every_variant_is_its_event_type_with_fields_left_out() -> None:
    """A variant may only drop fields (it is the same event as the hub sends it with less detail)."""
    for name, variant in catalog.variants().items():
        full = catalog.entries()[variant.alias].sample()
        body, full_body = (next(iter(e["events"].values())) for e in (variant.sample(), full))
        assert list(variant.sample()["events"]) == list(full["events"]), name
        assert body.items() <= full_body.items() and body != full_body, name


def test_an_unknown_alias_is_an_error_with_a_suggestion() -> None:
    result = run_catalog("user.userDeletd")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("idhooks catalog: error: unknown event type 'user.userDeletd' "
                             "(did you mean 'user.userDeleted'?); run `idhooks catalog` for the list\n")
