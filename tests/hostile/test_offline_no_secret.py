"""Issue 12 item 18: the offline commands work on a fresh clone, which has no var/webhook-secret yet (`make
run` creates it): validate, test, replay, events, deliveries. Only `serve` needs the webhook secret."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from tests.conftest import ROOT


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    """The shipped config.yaml and rules/ as a clone has them: no var/ folder."""
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    assert not (tmp_path / "var").exists()
    return tmp_path


def run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)


def test_make_validate_needs_no_secret():
    recipe = re.search(r"^validate:(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe and "webhook-secret" not in recipe.group(1)


def test_validate_and_rule_tests_on_a_fresh_clone(fresh_clone: Path):
    validated = run(fresh_clone, "validate", "--config", "config.yaml")
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.startswith("OK: config.yaml, ")
    assert "note: " in validated.stderr and "var/webhook-secret" in validated.stderr
    tested = run(fresh_clone, "test", "--config", "config.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "passed" in tested.stdout


def test_stored_event_commands_on_a_fresh_clone(fresh_clone: Path, capsys):
    config = str(fresh_clone / "config.yaml")
    assert main(["events", "list", "--config", config]) == 0
    assert main(["replay", "--since", "1h", "--config", config]) == 0
    assert main(["deliveries", "--config", config]) == 0
    assert "cannot read secret file" not in capsys.readouterr().err


def test_serve_still_requires_the_secret(fresh_clone: Path):
    served = run(fresh_clone, "serve", "--config", "config.yaml", "--port", "0")
    assert served.returncode == 1
    assert "cannot read secret file" in served.stderr and "webhook-secret" in served.stderr


def test_subscriptions_and_destinations_on_a_fresh_clone(fresh_clone: Path, capsys):
    config = str(fresh_clone / "config.yaml")
    assert main(["subscriptions", "--config", config]) == 0
    assert main(["destinations", "list", "--config", config]) == 0
    assert "provisioning-service" in capsys.readouterr().out
