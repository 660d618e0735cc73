"""Issue 12 item 11: an alias bomb, a deep nest or a huge file in the one YAML loader (config and rules) is a
quick, clear error; dropped into a watched rules folder, the live server keeps the last good rule set without
growing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from engine.cli import main
from engine.config.yamlbounds import MAX_DEPTH, MAX_FILE_BYTES
from engine.config.yamlsource import load_yaml_text
from engine.errors import ConfigError
from tests.conftest import basic_config, sample_event, signed


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """The billion laughs: `width ** levels` values in a few hundred bytes."""
    lines = ["rules:", "  - id: bomb", "    event: login.loginFailed", "    actions:",
             "      - log: &l0 {message: [" + ", ".join(["lol"] * width) + "]}"]
    for level in range(1, levels):
        lines.append(f"      - log: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_with_its_size():
    with pytest.raises(ConfigError) as caught:
        load_yaml_text(alias_bomb(), "rules/bomb.yaml")
    assert str(caught.value).startswith("rules/bomb.yaml:1: aliases expand this document to ")
    assert "is it an alias bomb?" in str(caught.value)


def test_modest_anchors_still_load():
    text = "defaults: &d {to: ops, subject: hi}\nrules:\n" + "".join(f"  - {{n: {i}, a: *d}}\n" for i in range(200))
    loaded = load_yaml_text(text, "rules/x.yaml")
    assert loaded["rules"][199]["a"] == {"to": "ops", "subject": "hi"}


def test_recursive_alias_is_refused():
    with pytest.raises(ConfigError, match=r"^rules/x.yaml:1: an alias refers to a collection that contains it"):
        load_yaml_text("a: &a [1, *a]\n", "rules/x.yaml")


def test_deep_nesting_is_refused_before_building_anything():
    with pytest.raises(ConfigError, match=rf"^rules/x.yaml:1: nested deeper than {MAX_DEPTH} levels$"):
        load_yaml_text("a: " + "[" * 500 + "]" * 500 + "\n", "rules/x.yaml")


def test_huge_file_is_refused_unread(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    huge = rules / "huge.yaml"
    with huge.open("wb") as handle:  # sparse: the size is what counts
        handle.truncate(MAX_FILE_BYTES + 1)
    config = basic_config(tmp_path)
    assert main(["validate", "--config", str(config)]) == 1


def test_validate_names_the_bomb_quickly(tmp_path, capsys):
    config = basic_config(tmp_path)
    (tmp_path / "rules" / "bomb.yaml").write_text(alias_bomb())
    assert main(["validate", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "rules/bomb.yaml:1: aliases expand this document to 1,456,790,149 values (at most 100,000 allowed" in err


def test_config_file_goes_through_the_same_bounds(tmp_path, capsys):
    config = basic_config(tmp_path)
    config.write_text(config.read_text() + "x-anchors: &b0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"x-{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 10) + "]\n" for i in range(1, 9)))
    assert main(["validate", "--config", str(config)]) == 1
    assert "aliases expand this document to" in capsys.readouterr().err


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_bomb_dropped_into_watched_folder_keeps_last_good_rules_and_memory(tmp_path, serve):
    config = basic_config(tmp_path)
    config.write_text(config.read_text().replace("rules: {paths: [rules/]}",
                                                 "rules: {paths: [rules/], watch_interval: 0.1}"))
    (tmp_path / "rules" / "good.yaml").write_text(
        "rules:\n  - id: good\n    event: login.loginFailed\n    actions:\n      - log: {message: hit}\n")
    server = serve(config)
    before = _rss_kb(server.proc.pid)
    for round_ in range(5):  # every drop is a reload attempt; none may accumulate memory
        (tmp_path / "rules" / f"bomb{round_}.yaml").write_text(alias_bomb())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            errors = requests.get(server.url + "/readyz", timeout=5).json()["rules"]["errors"]
            if any(f"bomb{round_}.yaml:1: aliases expand" in e for e in errors):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the bomb was not reported:\n{server.log()}")
    after = _rss_kb(server.proc.pid)
    assert after - before < 50_000, f"RSS grew from {before} kB to {after} kB"
    event = sample_event()
    body, headers = signed(event)
    assert requests.post(server.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10).status_code == 202
    ready = requests.get(server.url + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["rules"]["count"] == 1
    from tests.test_reload_process import decisions_of
    assert [d["rule"] for d in decisions_of(tmp_path, event["jti"]) if d["matched"]] == ["good"]
