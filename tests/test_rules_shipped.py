"""`make test` runs the shipped rule tests: `idhooks test --config config.yaml` on the repo's own rules/
(as a real process), and `idhooks validate` on the same config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from engine import catalog
from tests.conftest import ROOT



def project_copy(tmp_path: Path) -> Path:
    """The repo's config.yaml beside the repo's rules/ (linked) and the webhook secret and console token `make run` creates."""
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "rules").symlink_to(ROOT / "rules")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "webhook-secret").write_text("test-secret")
    (tmp_path / "var" / "console-token").write_text("test-token")
    return tmp_path / "config.yaml"


def idhooks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_shipped_rule_tests_pass_with_full_condition_coverage(tmp_path):
    result = idhooks("test", "--config", str(project_copy(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.endswith(" passed, 0 failed") for line in lines)
    assert not [line for line in lines if "not covered" in line]


def test_shipped_rules_and_config_validate(tmp_path):
    result = idhooks("validate", "--config", str(project_copy(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: ")


# A shipped rule keyed by a field that a variant leaves out cannot count that variant: rule -> (variant, why).
CANNOT_FIRE = {
    ("password-spray-ip", "login.loginFailed/no-flow-fields"): "threshold: not counted: $.initiatorIpAddress is missing",
    ("registration-failures-ip", "registration.registrationFailed/no-flow-fields"):
        "threshold: not counted: initiatorIpAddress is missing",
    ("new-country-for-user", "login.loginSuccess/no-flow-fields"):
        "new_value: not counted: new_value.of geo.country is missing in this event",
    ("new-asn-for-user", "login.loginSuccess/no-flow-fields"):
        "new_value: not counted: new_value.of geo.asn is missing in this event",
    ("login-outside-allowed-countries", "login.loginSuccess/no-flow-fields"): "when: geo.country not_in",
}


def _shipped(folder: Path) -> list[dict]:
    return [item for path in sorted(folder.glob("*.yaml")) for item in
            (yaml.safe_load(path.read_text()) or {}).get("rules" if folder.name == "rules" else "tests", [])]


def _aliases(event: object) -> list[str]:
    patterns = event if isinstance(event, list) else [event]
    return [alias for alias in catalog.entries() for pattern in patterns
            if pattern in (alias, "*") or str(pattern).endswith(".*") and alias.startswith(str(pattern)[:-1])]


def _tested_variants(test: dict) -> set[str]:
    steps = test.get("sequence") or [test]
    return {step["event"] for step in steps if isinstance(step.get("event"), str) and "/" in step["event"]}


def _rule_events(rule: dict) -> list[str]:
    """A rule's event patterns: its `event:`, or its sequence steps' events."""
    if "event" in rule:
        return rule["event"] if isinstance(rule["event"], list) else [rule["event"]]
    steps = rule.get("sequence", {}).get("steps", [])
    return [event for step in steps for event in (step["event"] if isinstance(step["event"], list)
                                                  else [step["event"]])]


def test_every_shipped_rule_is_tested_on_every_variant_of_its_events(tmp_path):
    """Item 17 of issue 12, for every shipped rule: each catalog variant of each event type it selects has
    a rule test in which the rule fires, or the rule is listed in CANNOT_FIRE and its decision says why."""
    fired = {(rule_id, variant) for test in _shipped(ROOT / "rules" / "tests")
             for rule_id in test.get("match", []) for variant in _tested_variants(test)}
    missing = []
    for rule in _shipped(ROOT / "rules"):
        for variant in (v for alias in _aliases(_rule_events(rule)) for v in catalog.variants_of(alias)):
            if (rule["id"], variant) in CANNOT_FIRE:
                (tmp_path / rule["id"]).mkdir()
                result = idhooks("test", str(catalog.variants()[variant].path), "--config",
                                 str(project_copy(tmp_path / rule["id"])))
                assert f"miss  {rule['id']}: {CANNOT_FIRE[rule['id'], variant]}" \
                    in result.stdout, result.stdout + result.stderr
            elif (rule["id"], variant) not in fired:
                missing.append(f"{rule['id']} on {variant}")
    assert not missing, "shipped rules without a rule test that fires on these variants: " + ", ".join(missing)
