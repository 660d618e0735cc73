"""Helpers for the rules tests: write rule files under tmp_path, load them, evaluate catalog samples."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from engine.verify.envelope import Envelope, envelope_from_claims
from engine.errors import ConfigError
from engine.match import Decision, RuleSet, load_ruleset
from tests.conftest import sample_event


def write_rules(folder: Path, text: str, name: str = "rules.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(folder: Path, text: str, **kwargs: Any) -> RuleSet:
    write_rules(folder, text)
    kwargs.setdefault("destinations", {})
    kwargs.setdefault("webhooks", ["asgardeo"])
    return load_ruleset([folder], **kwargs)


def problems(folder: Path, text: str, **kwargs: Any) -> list[str]:
    """Every load problem, with the file path shortened to `rules.yaml`."""
    with pytest.raises(ConfigError) as caught:
        load(folder, text, **kwargs)
    return [p.replace(f"{folder}/", "") for p in caught.value.problems]


def envelope(alias: str = "login.loginFailed", **body: Any) -> Envelope:
    return envelope_from_claims(sample_event(alias, **body))


def decide(ruleset: RuleSet, env: Envelope, webhook: str = "asgardeo") -> dict[str, Decision]:
    return {d.rule_id: d for uri in env.uris for d in ruleset.evaluate(env, uri, webhook)}


def rule_with(when: str, event: str = "login.loginFailed", rule_id: str = "r") -> str:
    """A one-rule file whose `when:` is `when` (YAML, indented by the caller's dedent)."""
    body = textwrap.indent(textwrap.dedent(when).strip("\n"), " " * 8)
    return f"rules:\n  - id: {rule_id}\n    event: {event}\n    when:\n{body}\n" \
           f"    actions:\n      - log: {{message: hit}}\n"
