"""Issue 12 item 4: lists under a destination (`allowed_hosts`, email `recipients`) load in `idhooks validate`
and in the server; hostile lists (deeply nested, huge, items that are not text) are one clear error each
and nothing is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from engine.config.settings import load_config
from engine.server import Service
from tests.conftest import basic_config

LISTS = """
destinations:
  hr:
    type: http
    base_url: https://a.example.com
    allowed_hosts: [b.example.com, "c.example.com:8443"]
  mail:
    type: email
    host: 127.0.0.1
    from: idhooks@example.com
    recipients: [sec@example.com, ops@example.com]
"""


def destination_config(tmp_path: Path, allowed_hosts: str) -> Path:
    return basic_config(tmp_path, extra=f"""
destinations:
  hr:
    type: http
    base_url: https://a.example.com
    allowed_hosts: {allowed_hosts}
""")


def validate(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["validate", "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def test_lists_under_destinations_load_in_validate_and_in_the_server(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = basic_config(tmp_path, extra=LISTS)
    code, out, err = validate(config, capsys)
    assert (code, err) == (0, "")
    assert out.startswith("OK: ")
    actions = Service.load_actions(load_config(config))
    http, mail = actions.get("http", "hr"), actions.get("email", "mail")
    assert http.origins == {("a.example.com", 443), ("b.example.com", 443), ("c.example.com", 8443)}
    assert mail.recipients == ["sec@example.com", "ops@example.com"]


@pytest.mark.parametrize("value,shown", [
    ("[" * 60 + "b.example.com" + "]" * 60, "[[[[...]]]]"),
    ("[b.example.com, 1, null, {a: b}, 2.5]", "['b.example.com', 1, None, {'a': 'b'}, 2.5]"),
    ("[b.example.com, '']", "['b.example.com', '']"),
    ("b.example.com", "'b.example.com'"),
])
def test_a_hostile_list_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str,
                                           shown: str) -> None:
    code, out, err = validate(destination_config(tmp_path, value), capsys)
    assert (code, out) == (1, "")
    assert err == ("idhooks: configuration error:\n"
                   f"{tmp_path / 'config.yaml'}:15: destinations.hr.allowed_hosts: expected a list of strings, "
                   f"got {shown}\n")


def test_a_huge_list_is_refused_with_its_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hosts = "[" + ", ".join(f"h{i}.example.com" for i in range(20_000)) + "]"
    code, out, err = validate(destination_config(tmp_path, hosts), capsys)
    assert (code, out) == (1, "")
    assert err.endswith("destinations.hr.allowed_hosts: expected at most 10,000 items, got 20,000\n")


def test_a_list_nested_beyond_the_yaml_bounds_is_refused_before_it_is_built(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = validate(destination_config(tmp_path, "[" * 5000 + "]" * 5000), capsys)
    assert (code, out) == (1, "")
    assert "RecursionError" not in err and "Traceback" not in err
    assert err.startswith(f"idhooks: configuration error:\n{tmp_path / 'config.yaml'}:")
    assert "nest" in err
