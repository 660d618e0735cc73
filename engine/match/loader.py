"""Rule files -> a compiled RuleSet. Every problem of every file is collected, then raised at once as one
ConfigError whose lines read `file:line: rule 'id': field.path: what was wrong (did you mean 'x'?)`.

Extending the schema: a rule's keys are validated in one place (`_read_rule`). Extra keys come from the
rule-key extensions passed to `load_ruleset(..., extensions=...)` (engine/match/extension.py; the default
list is engine/match/extensions.py); each parser's compiled value is stored in `Rule.extra[name]`. Keys of
no extension stay errors.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

from engine.config.schema import Reader, suggest
from engine.config.settings import Config
from engine.errors import ConfigError
from engine.match.enrich import Enricher
from engine.match.rule_actions import compile_action
from engine.match.conditions import Report, compile_condition, line_of
from engine.match.extension import RuleExtension
from engine.match.extensions import RULE_EXTENSIONS
from engine.match.index import parse_selector
from engine.match.ruleset import Rule, RuleSet
from engine.match.templates import extra_names
from engine.config.yamlsource import load_yaml_file

RULE_KEYS = ("id", "description", "enabled", "mode", "event", "webhooks", "when", "actions")
MODES = ("live", "shadow")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
RULE_FILE_SUFFIXES = (".yaml", ".yml")


def display_path(path: Path) -> str:
    """`path` relative to the current folder when inside it (as people type it), else absolute."""
    absolute = Path(os.path.abspath(path))
    return str(absolute.relative_to(Path.cwd())) if absolute.is_relative_to(Path.cwd()) else str(path)


def rule_files(paths: Sequence[Path], problems: list[str]) -> list[Path]:
    """The rule files in `paths`: a folder means its *.yaml/*.yml files (not subfolders: rules/tests/
    holds rule tests), a file means itself."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in RULE_FILE_SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            problems.append(f"{display_path(path)}: no such rule file or folder")
    return found


class _Loader:
    def __init__(self, destinations: Mapping[str, Mapping[str, Any]], webhooks: Collection[str],
                 extensions: Sequence[RuleExtension]) -> None:
        self.destinations = destinations
        self.webhooks = frozenset(webhooks)
        self.keys = {key.name: key for extension in extensions for key in extension.keys}
        self.checks = [extension.check for extension in extensions if extension.check is not None]
        self.problems: list[str] = []
        self.first_seen: dict[str, str] = {}

    def load_file(self, path: Path) -> list[Rule]:
        source = display_path(path)
        try:
            raw = load_yaml_file(path, source)
        except ConfigError as exc:
            self.problems += exc.problems
            return []
        return self.load_raw(raw, source)

    def load_raw(self, raw: Any, source: str) -> list[Rule]:
        """The rules of one parsed rule file (`rules: [...]`) named `source` in errors."""
        if raw is None:
            return []
        if not isinstance(raw, dict) or not isinstance(raw.get("rules", []), list):
            self.problems.append(f"{source}:{line_of(raw)}: expected a mapping with `rules:` (a list of rules)")
            return []
        for key in raw:
            if key != "rules":
                self.problems.append(f"{source}:{line_of(raw, key)}: {key}: unknown key{suggest(str(key), ['rules'])}; "
                                     "a rule file holds only `rules:`")
        items = raw.get("rules") or []
        rules = [self.read_rule(node, i, source, line_of(items, i)) for i, node in enumerate(items)]
        return [r for r in rules if r is not None]

    def read_rule(self, node: Any, index: int, source: str, line: int) -> Rule | None:
        if not isinstance(node, dict):
            self.problems.append(f"{source}:{line}: rules[{index}]: expected a mapping with id, event and actions")
            return None
        rule_id = node.get("id")
        label = f"rule '{rule_id}'" if isinstance(rule_id, str) and rule_id else f"rules[{index}]"
        found: list[tuple[int, str]] = []

        def report(line: int, where: str, message: str) -> None:
            found.append((line, f"{source}:{line}: {label}: {where}: {message}"))

        rule = _read_rule(node, source, report, self)
        self.problems += [text for _, text in sorted(found, key=lambda item: item[0])]
        return None if found else rule


def _check_id(node: dict, source: str, report: Report, loader: _Loader) -> str:
    rule_id = node.get("id")
    if "id" not in node:
        report(line_of(node), "id", "missing: every rule needs a unique id of lowercase letters, digits and '-'")
        return ""
    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        report(line_of(node, "id"), "id", f"expected lowercase letters, digits and '-', got {rule_id!r}")
        return ""
    where = f"{source}:{line_of(node, 'id')}"
    if rule_id in loader.first_seen:
        report(line_of(node, "id"), "id", f"duplicate rule id (first defined at {loader.first_seen[rule_id]})")
    else:
        loader.first_seen[rule_id] = where
    return rule_id


def _events(node: dict, report: Report, loader: _Loader) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    if "event" not in node and any(key.supplies_events and key.name in node for key in loader.keys.values()):
        return (), ()
    if "event" not in node:
        report(line_of(node), "event", "missing: give an alias like login.loginFailed, a channel wildcard like "
                                       "login.*, '*', a full event URI, or a list of these")
        return (), ()
    raw = node["event"]
    values = raw if isinstance(raw, list) else [raw]
    selectors = []
    for i, value in enumerate(values):
        where = f"event[{i}]" if isinstance(raw, list) else "event"
        try:
            selectors.append(parse_selector(value))
        except ValueError as exc:
            report(line_of(node, "event"), where, str(exc))
    return tuple(str(v) for v in values), tuple(selectors)


def _webhooks(node: dict, report: Report, known: frozenset[str]) -> frozenset[str] | None:
    if "webhooks" not in node:
        return None
    value = node["webhooks"]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        report(line_of(node, "webhooks"), "webhooks", "expected a list of webhook names from config.yaml")
        return None
    for name in value:
        if name not in known:
            report(line_of(node, "webhooks"), "webhooks", f"unknown webhook '{name}'{suggest(name, sorted(known))}; "
                                                          f"configured webhooks: {', '.join(sorted(known)) or 'none'}")
    return frozenset(value)


def _mode(node: dict, report: Report) -> str:
    value = node.get("mode", "live")
    if value not in MODES:
        report(line_of(node, "mode"), "mode", f"expected one of: {', '.join(MODES)}, got {value!r}"
                                              f"{suggest(value, MODES) if isinstance(value, str) else ''}")
        return "live"
    return value


def _read_rule(node: dict, source: str, report: Report, loader: _Loader) -> Rule:
    """Every rule key is read here (and only here), including the keys of rule-key extensions."""
    allowed = RULE_KEYS + tuple(loader.keys)
    for key in node:
        if key not in allowed:
            report(line_of(node, key), str(key), f"unknown rule key{suggest(str(key), allowed)}; "
                                                 f"expected one of: {', '.join(allowed)}")
    rule = Rule(id=_check_id(node, source, report, loader), source=source, line=line_of(node))
    flags = Reader(node, "", report)
    rule.description = flags.text("description", "")
    rule.enabled = flags.boolean("enabled", True)
    rule.mode = _mode(node, report)
    rule.events, rule.selectors = _events(node, report, loader)
    rule.webhooks = _webhooks(node, report, loader.webhooks)
    if node.get("when") is not None:
        rule.condition = compile_condition(node["when"], "when", report)
    actions = node.get("actions")
    if not isinstance(actions, list) or not actions:
        report(line_of(node, "actions") if "actions" in node else line_of(node), "actions",
               "expected a non-empty list of actions, like `- log: {message: ...}`")
        actions = []
    names = tuple(dict.fromkeys(name for key in loader.keys.values() if key.name in node
                                for name in key.template_names))
    with extra_names(names):
        compiled = [compile_action(item, i, loader.destinations, report) for i, item in enumerate(actions)]
    rule.actions = [a for a in compiled if a is not None]
    for name, key in loader.keys.items():
        if name in node:
            rule.extra[name] = key.parse(node[name], line_of(node, name), report)
            _add_events(rule, rule.extra[name])
    for check in loader.checks:
        check(node, report)
    return rule


def _add_events(rule: Rule, compiled: Any) -> None:
    """Event types a key's compiled value adds to the rule's (a sequence's steps, an absence's expect)."""
    if getattr(compiled, "selectors", ()) and rule.own_selectors is None:
        rule.own_selectors = rule.selectors
    for event, selector in zip(getattr(compiled, "events", ()), getattr(compiled, "selectors", ())):
        if selector not in rule.selectors:
            rule.events += (event,)
            rule.selectors += (selector,)


def load_ruleset(paths: Sequence[Path], *, destinations: Mapping[str, Mapping[str, Any]],
                 webhooks: Collection[str] = (), enricher: Enricher | None = None,
                 extensions: Sequence[RuleExtension] = RULE_EXTENSIONS) -> RuleSet:
    """Compile every rule file in `paths` with the rule keys of `extensions` added; ConfigError listing
    every problem of every file. `enricher` gives the `geo.*` names (None: the bundled data)."""
    loader = _Loader(destinations, webhooks, extensions)
    files = rule_files(paths, loader.problems)
    rules = [rule for path in files for rule in loader.load_file(path)]
    if loader.problems:
        raise ConfigError(loader.problems)
    return RuleSet(rules, tuple(display_path(p) for p in files), enricher)


def load_ruleset_text(raw: Any, source: str, config: Config) -> RuleSet:
    """Compile one rule file already parsed from text (the playground's textarea) as `config` would load
    it (its destinations, webhooks and enrichment data); ConfigError as above."""
    loader = _Loader(config.destinations, [w.name for w in config.webhooks], RULE_EXTENSIONS)
    rules = loader.load_raw(raw, source)
    if loader.problems:
        raise ConfigError(loader.problems)
    return RuleSet(rules, (source,), config_enricher(config))


def config_enricher(config: Config) -> Enricher | None:
    """The enrichment data `config` names (None: the bundled data)."""
    if not (config.enrich.geoip_file or config.enrich.asn_file):
        return None
    try:
        return Enricher(config.enrich.geoip_file, config.enrich.asn_file)
    except ConfigError as exc:
        raise ConfigError([f"{config.path}: {problem}" for problem in exc.problems]) from None


def load_for_config(config: Config, paths: Sequence[Path] | None = None) -> RuleSet:
    """The rule set of `config` (or of `paths` instead of its rules.paths), checked against its
    destinations and webhooks."""
    return load_ruleset(list(paths) if paths else list(config.rules.paths), destinations=config.destinations,
                        webhooks=[w.name for w in config.webhooks], enricher=config_enricher(config))
