"""Command-line misuse is a usage error: exit 2 with the command's usage line (as argparse does), never a
"configuration error" exit 1, for every command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.cli import build_parser, main
from tests.conftest import basic_config

COMMANDS = sorted(name for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)
                  for name in action.choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_option_exits_2_with_the_usage_line(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--no-such-option"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.startswith("usage: idhooks")
    assert "error: " in err  # the unknown option, or the command's required arguments missing and "configuration error" not in err


@pytest.mark.parametrize("argv", [
    ["test", "--webhook", "nope"],
    ["migrate", "--from", "sqlite:///{tmp}/missing.db", "--to", "redis://127.0.0.1:6379/15"],
    ["migrate", "--from", "sqlite:///{tmp}/x.db", "--to", "redis://127.0.0.1:6379/15", "--retention", "forever"],
    ["simulate", "verify", "--url", "ftp://x", "--topic", "t"],
])
def test_a_bad_option_value_found_after_parsing_exits_2_too(argv: list[str], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = basic_config(tmp_path)
    (tmp_path / "x.db").touch()
    args = [a.format(tmp=tmp_path) for a in argv]
    code = main(args + (["--config", str(config)] if args[0] == "test" else []))
    err = capsys.readouterr().err
    assert code == 2
    prog = " ".join(args[:2]) if args[0] == "simulate" else args[0]
    assert err.startswith(f"usage: idhooks {prog}")
    assert f"\nidhooks {prog}: error: " in err
