"""Secret files as editors save them (issue 12, item 16): CRLF and trailing whitespace are not part of the
secret; an empty or whitespace-only secret is refused when the config loads (fail closed)."""

from __future__ import annotations

import falcon.testing
import pytest

from engine.config.settings import load_config
from engine.errors import ConfigError
from engine.receive.app import create_app
from engine.store.sqlite import SQLiteStore
from tests.conftest import SECRET, basic_config, sample_event, signed


@pytest.mark.parametrize("saved", [SECRET + "\r\n", SECRET + "\n", SECRET + " \t\r\n\r\n", SECRET])
def test_a_secret_file_saved_with_crlf_or_trailing_whitespace_is_read_without_it(tmp_path, saved):
    path = basic_config(tmp_path)
    (tmp_path / "secret").write_bytes(saved.encode())
    assert load_config(path).webhooks[0].secrets[0].reveal() == SECRET


def test_a_crlf_secret_file_accepts_genuine_events(tmp_path):
    path = basic_config(tmp_path)
    (tmp_path / "secret").write_bytes(SECRET.encode() + b"\r\n")
    store = SQLiteStore(tmp_path / "idhooks.db")
    client = falcon.testing.TestClient(create_app(load_config(path), store))
    body, headers = signed(sample_event())
    assert client.simulate_post("/webhooks/asgardeo", body=body, headers=headers).status_code == 202
    store.close()


@pytest.mark.parametrize("saved", ["", "\n", "   ", "\r\n", " \t \r\n"])
def test_an_empty_or_whitespace_only_secret_file_is_a_load_error(tmp_path, saved):
    path = basic_config(tmp_path)
    (tmp_path / "secret").write_text(saved)
    with pytest.raises(ConfigError, match=r"webhooks\[0\].secret_file: the secret is empty \(or only whitespace\)"):
        load_config(path)


def test_a_whitespace_only_secret_from_the_environment_is_a_load_error(tmp_path):
    path = basic_config(tmp_path)
    path.write_text(path.read_text().replace("secret_file: secret", 'secret: "${HOOK_SECRET}"'))
    with pytest.raises(ConfigError, match=r"the secret is empty \(or only whitespace\)"):
        load_config(path, env={"HOOK_SECRET": "  \t"})
