"""docs/actions.md's on-call/chat/SIEM example: its destinations build and its rule actions compile and
render against a catalog event, so the documented keys cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from actions import build_actions
from actions.base import ActionContext
from engine.secrets import Secret
from tests.conftest import ROOT
from tests.rules_support import decide, envelope, load


def _example() -> tuple[dict, list]:
    text = (ROOT / "docs" / "actions.md").read_text()
    section = text[text.index("## On-call, chat and SIEM"):]
    config, actions = re.findall(r"```yaml\n(.*?)```", section, re.S)[:2]
    return yaml.safe_load(config)["destinations"], yaml.safe_load(actions)["actions"]


def test_documented_destinations_build_and_actions_render(tmp_path: Path) -> None:
    destinations, actions = _example()
    resolved = {name: {k: Secret("https://secret.example.com/x") if isinstance(v, str) and v.startswith("${") else v for k, v in d.items()}
                for name, d in destinations.items()}
    built = build_actions(resolved, ActionContext())
    assert {"pagerduty", "opsgenie", "teams", "splunk_hec", "syslog", "nats"} <= \
        {type_name for type_name, _ in built._instances}
    rules = {"rules": [{"id": "doc-example", "event": "user.userAccountLocked", "actions": actions}]}
    ruleset = load(tmp_path, yaml.safe_dump(rules), destinations=destinations)
    rendered = {a.type: a.fields for a in decide(ruleset, envelope("user.userAccountLocked"))["doc-example"].actions}
    assert rendered["nats"]["subject"] == "idhooks.user.userAccountLocked"
    assert rendered["syslog"]["event_id"] == "doc-example"
    assert rendered["splunk_hec"]["event"]["decision"] == {"rule": "doc-example", "matched": True}
