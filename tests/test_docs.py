"""The documentation cannot go stale: its YAML parses, its configs load, its rules validate, the commands it
shows parse, the metrics it names exist, and the Dockerfile installs exactly what the Makefile (and this
suite) installs."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine.config import settings as config_module
from engine.cli import build_parser
from engine.metrics import Metrics
from engine.store.sqlite import SQLiteStore
from tests.conftest import ROOT, env_names, provide_secret_files

DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
RULE_ID = re.compile(r"^[a-z0-9-]+$")


def blocks(language: str) -> list[tuple[str, str]]:
    """(file:line, text) of every fenced block of `language` in docs/*.md."""
    found = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                found.append((f"{path.name}:{text.count(chr(10), 0, match.start()) + 1}", match.group(2)))
    return found


YAML_BLOCKS = blocks("yaml")


def _kind(text: str) -> str:
    """'rules' for a rule file (a `rules:` list), 'config' for a config.yaml fragment, else 'other'."""
    data = yaml.safe_load(text)
    if isinstance(data, dict) and isinstance(data.get("rules"), list):
        return "rules"
    if isinstance(data, dict) and set(data) <= set(config_module._TOP_KEYS):
        return "config"
    return "other"


RULE_BLOCKS = [(where, text) for where, text in YAML_BLOCKS if _kind(text) == "rules"]
CONFIG_BLOCKS = [(where, text) for where, text in YAML_BLOCKS if _kind(text) == "config"]


RULE_DOCS = sorted({where.split(":")[0] for where, _ in RULE_BLOCKS})


def test_the_docs_have_the_examples_this_suite_checks() -> None:
    cookbook_rules = [where for where, _ in RULE_BLOCKS if where.startswith("cookbook.md:")]
    assert len(cookbook_rules) >= 7 and len(CONFIG_BLOCKS) >= 3


@pytest.mark.parametrize("where, text", YAML_BLOCKS, ids=[w for w, _ in YAML_BLOCKS])
def test_every_yaml_block_parses(where: str, text: str) -> None:
    assert yaml.safe_load(text) is not None, f"{where}: empty yaml block"


@pytest.mark.parametrize("doc", RULE_DOCS)
def test_rule_blocks_have_unique_well_formed_ids(doc: str) -> None:
    ids = []
    for where, text in RULE_BLOCKS:
        if where.startswith(doc + ":"):
            for rule in yaml.safe_load(text)["rules"]:
                assert RULE_ID.match(rule["id"]), f"{where}: rule id {rule['id']!r}"
                assert (rule.get("event") or rule.get("sequence")) and rule.get("actions"), \
                    f"{where}: rule {rule['id']} needs event (or sequence steps) and actions"
                ids.append(rule["id"])
    assert len(ids) == len(set(ids))


def run_validate(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "validate", "--config", str(config)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                          timeout=60)


@pytest.mark.parametrize("doc", RULE_DOCS)
def test_rule_blocks_of_the_docs_pass_idhooks_validate(doc: str, tmp_path: Path) -> None:
    """Each doc's complete rule files together (docs may reuse each other's ids), with the cookbook's
    destinations configured."""
    rules = tmp_path / "rules"
    rules.mkdir()
    blocks_of_doc = [text for where, text in RULE_BLOCKS if where.startswith(doc + ":")]
    for index, text in enumerate(blocks_of_doc):
        (rules / f"{index:02d}.yaml").write_text(text)
    destinations = next(text for where, text in CONFIG_BLOCKS if where.startswith("cookbook.md"))
    config = tmp_path / "config.yaml"
    config.write_text("webhooks: [{name: asgardeo, secret: x}]\nrules: {paths: [rules/]}\n" + destinations)
    # validate builds the destinations as serve does: a URL variable needs a URL
    env = {name: "https://hooks.example.com/x" if name.endswith("URL") else "x" for name in env_names(destinations)}
    result = run_validate(config, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK: {config}, ")


def test_shipped_config_and_rules_pass_idhooks_validate(tmp_path: Path) -> None:
    """`make validate` on a fresh checkout: the sample config.yaml with every rule file under rules/."""
    text = (ROOT / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text(provide_secret_files(text, tmp_path))
    (tmp_path / "rules").symlink_to(ROOT / "rules")
    result = run_validate(tmp_path / "config.yaml", {name: "x" for name in env_names(text)})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("where, text", CONFIG_BLOCKS, ids=[w for w, _ in CONFIG_BLOCKS])
def test_config_blocks_load(where: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(provide_secret_files(text, tmp_path))
    env = {name: "value-of-" + name for name in env_names(text)}
    loaded = config_module.load_config(path, env=env)
    shown = repr(loaded)
    assert all(secret.reveal() not in shown for secret in config_module.all_secrets(loaded))


def test_configuration_doc_names_every_config_key() -> None:
    text = (DOCS / "configuration.md").read_text()
    sections = (config_module.ServerConfig, config_module.StoreConfig, config_module.WebhookConfig,
                config_module.RulesConfig, config_module.QuarantineConfig, config_module.DeliveryConfig,
                config_module.EnrichConfig, config_module.ApiConfig, config_module.ApiToken)
    keys = {f.name for cls in sections for f in dataclasses.fields(cls)} - {"secrets"}
    keys |= {"secret", "secret_file", "secrets", *config_module._TOP_KEYS}
    missing = sorted(key for key in keys if f"`{key}`" not in text)
    assert missing == []


# -- commands shown in the docs ----------------------------------------------------------------------------
def shown_commands(prefixes: tuple[str, ...]) -> list[str]:
    commands = []
    for _, text in blocks("sh"):
        for line in text.replace("\\\n", " ").splitlines():
            if line.startswith(prefixes):
                commands.append(line)
    return commands


SHOWN = shown_commands(("idhooks simulate", "idhooks catalog"))


def test_docs_show_simulate_commands() -> None:
    assert len(SHOWN) >= 5


@pytest.mark.parametrize("line", SHOWN)
def test_simulate_and_catalog_commands_in_the_docs_parse(line: str) -> None:
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert callable(args.func)


# -- metrics named in the docs and the alert rules ------------------------------------------------------------
@pytest.fixture(scope="module")
def metric_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    store = SQLiteStore(str(tmp_path_factory.mktemp("metrics") / "idhooks.db"))
    try:
        metrics = Metrics()
        metrics.watch_store(store.stats, store.last_accepted)
        text = metrics.render().decode()
    finally:
        store.close()
    return set(re.findall(r"^# TYPE (\w+)", text, re.M)) | set(re.findall(r"^# HELP (\w+)", text, re.M))


def _base_name(name: str) -> str:
    return re.sub(r"_(bucket|count|sum|created)$", "", name)


def test_alert_rules_are_well_formed_and_use_real_metrics(metric_names: set[str]) -> None:
    document = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert {"IdhooksWebhookSilent", "IdhooksDeadLetters", "IdhooksSignatureFailures", "IdhooksReloadFailed"} \
        <= {rule["alert"] for rule in rules}
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"] and rule["expr"].count("(") == rule["expr"].count(")")
        unknown = {n for n in re.findall(r"idhooks_\w+", rule["expr"]) if _base_name(n) not in metric_names}
        assert unknown == set(), rule["alert"]


def test_metric_names_in_the_docs_exist(metric_names: set[str]) -> None:
    for path in DOCS.glob("*.md"):
        named = set(re.findall(r"\bidhooks_[a-z_]+[a-z]", path.read_text()))
        unknown = {n for n in named if _base_name(n) not in metric_names}
        assert unknown == set(), path.name


# -- Dockerfile ------------------------------------------------------------------------------------------------
def makefile_install_args() -> list[str]:
    match = re.search(r"^INSTALL_ARGS\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "Makefile has no INSTALL_ARGS"
    return shlex.split(match.group(1))


def dockerfile_install_args() -> list[str]:
    runs = re.findall(r"^RUN python -m pip install (.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert len(runs) == 1, "the Dockerfile must install idhooks with exactly one `RUN python -m pip install`"
    return shlex.split(runs[0])


def test_dockerfile_installs_with_the_makefiles_arguments() -> None:
    assert dockerfile_install_args() == makefile_install_args()
    assert "$(PYTHON) -m pip install $(INSTALL_ARGS)" in (ROOT / "Makefile").read_text()


def copied_sources() -> list[Path]:
    """What the Dockerfile's COPY lines take from the repository (globs expanded as Docker does)."""
    found = []
    for sources in re.findall(r"^COPY (.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M):
        for source in sources.split():
            matches = sorted(ROOT.glob(source))
            assert matches or "*" in source, f"Dockerfile copies {source}, which is not in the repository"
            found.extend(matches)
    return found


def test_dockerfile_copies_what_the_package_needs_and_runs_as_non_root() -> None:
    names = {path.name for path in copied_sources()}
    assert {"pyproject.toml", "engine", "actions"} <= names
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    assert re.search(r'^ENTRYPOINT \["idhooks", "serve"', text, re.M)


@pytest.mark.slow
def test_the_install_command_builds_a_working_package(tmp_path: Path) -> None:
    """Runs the Dockerfile's (= Makefile's) install on a copy of the sources, offline, into a target folder,
    then uses the installed copy: catches package data (the event catalog) missing from the wheel."""
    source = tmp_path / "src"
    source.mkdir()
    for item in copied_sources():
        copy = shutil.copytree if item.is_dir() else shutil.copy
        copy(item, source / item.name)
    target = tmp_path / "site"
    offline = ["--no-build-isolation", "--no-index", "--no-deps", "--target", str(target), "--quiet"]
    install = subprocess.run([sys.executable, "-m", "pip", "install", *dockerfile_install_args(), *offline],
                             cwd=source, capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    probe = "import engine, sys; print(engine.__file__); sys.argv[1:] = ['catalog', '--json']; " \
            "from engine.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(target)}, timeout=60)
    assert result.returncode == 0, result.stderr
    module_path, listing = result.stdout.split("\n", 1)
    assert module_path.startswith(str(target))
    assert len(json.loads(listing)) == 27
    [login] = [entry for entry in json.loads(listing) if entry["alias"] == "login.loginFailed"]
    assert login["variants"] == ["login.loginFailed/no-flow-fields"]  # the variants are package data too
