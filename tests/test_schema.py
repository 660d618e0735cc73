"""One schema reader (engine/config/schema.py): a value means the same in config.yaml, in a destination and in
a rule, and a settings key is declared once with its default."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from actions.destination import DestinationReader
from engine.config.schema import Reader, read_settings, setting
from engine.config.settings import DeliveryConfig, load_config
from engine.config.yamlsource import load_yaml_text
from engine.errors import ConfigError
from tests.conftest import basic_config
from tests.rules_support import problems


def config_watch(tmp_path: Path, written: str) -> bool | str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = basic_config(tmp_path, extra="").read_text().replace("rules: {paths: [rules/]}",
                                                                   f"rules: {{paths: [rules/], watch: {written}}}")
    (tmp_path / "config.yaml").write_text(config)
    try:
        return load_config(tmp_path / "config.yaml", env={"ON": "true", "OFF": "FALSE"}).rules.watch
    except ConfigError as exc:
        return "error" if "rules.watch: expected true or false" in str(exc) else str(exc)


def destination_starttls(written: str) -> bool | str:
    node = load_yaml_text(f"starttls: {written}\n", "config.yaml")
    reader = DestinationReader("config.yaml", "mail", node)
    value = reader.boolean("starttls", False)
    return "error" if reader.problems else value


def rule_enabled(tmp_path: Path, written: str) -> bool | str:
    found = problems(tmp_path, f"rules:\n  - id: r\n    event: login.loginFailed\n    enabled: {written}\n"
                               "    actions:\n      - log: {message: hi}\n      - log: {message: [oops]}\n")
    if any("enabled: expected true or false" in p for p in found):
        return "error"
    return "loaded"


@pytest.mark.parametrize("written,meaning", [
    ("true", True), ("false", False), ("yes", True), ("off", False),  # YAML booleans (1.1 words when unquoted)
    ('"yes"', "error"), ('"true"', "error"), ("1", "error"), ("'0'", "error"), ("maybe", "error"),
])
def test_a_boolean_means_the_same_in_config_destinations_and_rules(tmp_path: Path, written: str,
                                                                   meaning: bool | str) -> None:
    assert config_watch(tmp_path / "c", written) == meaning
    assert destination_starttls(written) == meaning
    assert rule_enabled(tmp_path / "r", written) == ("error" if meaning == "error" else "loaded")


def test_text_from_an_environment_variable_converts_to_the_key_type(tmp_path: Path) -> None:
    assert config_watch(tmp_path / "a", "'${ON}'") is True
    assert config_watch(tmp_path / "b", "'${OFF}'") is False
    (tmp_path / "c").mkdir()
    config = basic_config(tmp_path / "c", extra="delivery: {workers: '${N}', lease: '${L}'}")
    delivery = load_config(config, env={"N": "7", "L": "90s"}).delivery
    assert (delivery.workers, delivery.lease) == (7, 90.0)
    with pytest.raises(ConfigError, match=r"delivery.workers: expected a whole number >= 1, got 'seven'"):
        load_config(config, env={"N": "seven", "L": "1m"})


def test_defaults_come_from_the_dataclass_and_unknown_keys_are_named() -> None:
    found: list[tuple[int, str, str]] = []
    node = load_yaml_text("workers: 3\nleas: 10s\n", "config.yaml")
    values = read_settings(DeliveryConfig, Reader(node, "delivery", lambda *p: found.append(p)))
    assert DeliveryConfig(**values) == dataclasses.replace(DeliveryConfig(), workers=3)
    assert found == [(2, "delivery.leas", "unknown key (did you mean 'lease'?); expected one of: workers, lease, "
                                          "retry_for, backoff_initial, backoff_max, per_destination_concurrency, "
                                          "shutdown_grace, lane")]


def test_a_new_setting_is_one_field() -> None:
    @dataclasses.dataclass(frozen=True)
    class Section:
        limit: int = setting(5, minimum=1)
        every: float = setting(60.0, kind="duration")
        label: str = setting("x")

    found: list[Any] = []
    values = read_settings(Section, Reader({"limit": 0, "every": "2m"}, "section", lambda *p: found.append(p)))
    assert Section(**values) == Section(limit=5, every=120.0)
    assert found == [(0, "section.limit", "expected a whole number >= 1, got 0")]
