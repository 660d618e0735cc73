"""`make test` runs the shipped rule tests: `idhooks test --config config.yaml` on the repo's own rules/
(as a real process), and `idhooks validate` on the same config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


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
