"""config.yaml: strict keys, ${VAR} expansion, secrets from env or files, and secrets never shown."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import falcon.testing
import pytest

from engine.receive.app import create_app
from engine.cli import main
from engine.config.settings import load_config
from engine.errors import ConfigError
from engine.logs import JsonFormatter, TextFormatter
from engine.store.sqlite import SQLiteStore
from tests.conftest import sample_event, signed, write_config

SECRET_VALUE = "s3cr3t-value-never-shown-9d1"


def config_text(webhook: str = "secret: ${HOOK_SECRET}", extra: str = "") -> str:
    return f"""
server: {{host: 127.0.0.1, port: 8080}}
store: {{url: "sqlite:///var/idhooks.db"}}
webhooks:
  - name: asgardeo
    path: /webhooks/asgardeo
    {webhook}
    topics: ["acme.*"]
rules: {{paths: [rules/]}}
{extra}
"""


def test_the_shipped_sample_config_loads_with_the_secret_file(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    text = (repo / "config.yaml").read_text()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "webhook-secret").write_text("random-secret\n")
    (tmp_path / "var" / "console-token").write_text("random-token")
    config = load_config(write_config(tmp_path, text))
    assert config.webhooks[0].secrets[0].reveal() == "random-secret"  # trailing newline of editors dropped
    assert [(t.name, t.token.reveal(), t.role) for t in config.api.tokens] == [("console", "random-token", "operator")]
    assert config.store.url == f"sqlite:///{tmp_path / 'var' / 'idhooks.db'}"
    assert config.rules.paths == (tmp_path / "rules",)


def test_env_variables_and_defaults_are_expanded(tmp_path):
    path = write_config(tmp_path, config_text().replace("port: 8080", 'port: "${IDHOOKS_PORT:-9090}"'))
    config = load_config(path, env={"HOOK_SECRET": SECRET_VALUE})
    assert config.server.port == 9090
    assert config.webhooks[0].secrets[0].reveal() == SECRET_VALUE


def test_an_unset_variable_is_an_error_naming_the_variable_and_the_key(tmp_path):
    path = write_config(tmp_path, config_text())
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert f"{path}:7: webhooks[0].secret: environment variable HOOK_SECRET is not set" in str(exc.value)


def test_unknown_keys_are_errors_with_a_suggestion_and_all_are_reported(tmp_path):
    text = config_text(extra="quarantine: {max_entrys: 5}").replace("port: 8080", "prot: 8080")
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={"HOOK_SECRET": "x"})
    problems = exc.value.problems
    assert f"{path}:2: server.prot: unknown key (did you mean 'port'?); expected one of: host, port, " \
           "max_body_bytes, threads, log_format, http_server, connection_limit, channel_timeout, cleanup_interval, " \
           "max_request_header_size, max_buffered_bytes, trusted_proxy, processes, cpu_pinning" in problems
    assert any("quarantine.max_entrys: unknown key (did you mean 'max_entries'?)" in p for p in problems)


@pytest.mark.parametrize("webhook,message", [
    ("", "no secret: give exactly one of secret"),
    ("secret: x\n    secret_file: y", "both secret and secret_file"),
    ("secret_file: missing-file", "cannot read secret file"),
    ('secret: ""', "the secret is empty"),
])
def test_a_missing_or_ambiguous_secret_is_an_error_never_an_open_door(tmp_path, webhook, message):
    path = write_config(tmp_path, config_text(webhook=webhook))
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert message in str(exc.value)


def test_validate_exits_1_listing_every_config_error(tmp_path, capsys):
    path = write_config(tmp_path, config_text().replace("port: 8080", "port: eighty"))
    (tmp_path / "rules").mkdir()
    assert main(["validate", "--config", str(path)]) == 1
    err = capsys.readouterr()
    text = err.out + err.err
    assert "server.port: expected a whole number >= 0, got 'eighty'" in text
    assert "HOOK_SECRET is not set" in text


def test_secrets_never_appear_in_repr_logs_errors_or_responses(tmp_path):
    (tmp_path / "rules").mkdir()
    path = write_config(tmp_path, config_text(extra="""
destinations:
  slack: {type: slack, webhook_url: "${SLACK_URL}"}
  api: {type: http, base_url: "http://127.0.0.1:9", headers: {Authorization: "Bearer ${API_TOKEN}"}}
"""))
    env = {"HOOK_SECRET": SECRET_VALUE, "SLACK_URL": "http://127.0.0.1:9/hooks/T0/B0/" + SECRET_VALUE,
           "API_TOKEN": SECRET_VALUE}
    config = load_config(path, env=env)
    (tmp_path / "r").mkdir()
    redis_config = load_config(write_config(tmp_path / "r", config_text().replace(
        'store: {url: "sqlite:///var/idhooks.db"}', 'store: {url: "redis://:${HOOK_SECRET}@127.0.0.1:6379/0"}')),
        env=env)
    assert SECRET_VALUE not in repr(redis_config)
    assert SECRET_VALUE not in repr(config) and SECRET_VALUE not in str(config)
    assert SECRET_VALUE not in f"{config.webhooks[0].secrets[0]}"

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    json_stream = io.StringIO()
    json_handler = logging.StreamHandler(json_stream)
    json_handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("idhooks")
    logger.addHandler(handler)
    logger.addHandler(json_handler)
    logger.setLevel(logging.DEBUG)
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    try:
        client = falcon.testing.TestClient(create_app(config, store))
        responses = [client.simulate_post("/webhooks/asgardeo", body=b, headers=h) for b, h in (
            signed(sample_event(), secret=SECRET_VALUE), signed(sample_event(), secret="wrong"),
            signed(b"not json", secret=SECRET_VALUE))]
        responses.append(client.simulate_get("/readyz"))
        responses.append(client.simulate_get("/metrics"))
        logger.info("config loaded", extra={"config": config})
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(json_handler)
        store.close()
    assert [r.status_code for r in responses] == [202, 401, 400, 200, 200]
    for text in [stream.getvalue(), json_stream.getvalue()] + [r.text for r in responses]:
        assert SECRET_VALUE not in text
    assert "event accepted" in stream.getvalue()


def test_log_lines_cannot_be_forged_by_event_data():
    record = logging.makeLogRecord({"name": "idhooks.http", "levelname": "INFO", "levelno": 20,
                                    "msg": "event %s", "args": ("accepted",),
                                    "jti": "abc\nFAKE ERROR injected\r\nmore"})
    for formatter in (TextFormatter(), JsonFormatter()):
        line = formatter.format(record)
        assert "\n" not in line and "\r" not in line
        assert "FAKE ERROR injected" in line


def test_retention_shorter_than_the_dedup_window_is_an_error(tmp_path):
    path = write_config(tmp_path, config_text().replace(
        'store: {url: "sqlite:///var/idhooks.db"}', 'store: {url: "sqlite:///var/idhooks.db", retention: 1d}'))
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={"HOOK_SECRET": "x"})
    assert "store.retention: must be at least store.dedup_window (7d)" in str(exc.value)


@pytest.mark.parametrize("value,expected", [("2", 2), ("auto", "auto"), ("1", 1)])
def test_server_processes_takes_a_count_or_auto(tmp_path, value, expected):
    path = write_config(tmp_path, config_text().replace("port: 8080", f"port: 8080, processes: {value}"))
    assert load_config(path, env={"HOOK_SECRET": "x"}).server.processes == expected


@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5", "true"])
def test_a_bad_server_processes_is_an_error(tmp_path, value):
    path = write_config(tmp_path, config_text().replace("port: 8080", f"port: 8080, processes: {value}"))
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={"HOOK_SECRET": "x"})
    assert "server.processes: expected a whole number >= 1 or 'auto', got" in str(exc.value)


@pytest.mark.parametrize("value,expected", [(None, "auto"), ("auto", "auto"), ("always", "always"),
                                            ("never", "never"), ("true", "always"), ("false", "never")])
def test_server_cpu_pinning_is_auto_always_or_never(tmp_path, value, expected):
    text = config_text() if value is None else config_text().replace("port: 8080", f"port: 8080, cpu_pinning: {value}")
    assert load_config(write_config(tmp_path, text), env={"HOOK_SECRET": "x"}).server.cpu_pinning == expected


@pytest.mark.parametrize("value", ["sometimes", "2", "[0, 1]", "{cpu: 0}", "'" + "A" * 100_000 + "'", "''"])
def test_a_bad_server_cpu_pinning_is_an_error_that_stays_short(tmp_path, value):
    path = write_config(tmp_path, config_text().replace("port: 8080", f"port: 8080, cpu_pinning: {value}"))
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={"HOOK_SECRET": "x"})
    message = str(exc.value)
    assert "server.cpu_pinning: expected 'auto' (a process's Python threads on one CPU, granian's on the others; " \
           "each of several processes on a CPU of its own when there is one CPU per process), 'always' or 'never', " \
           "got" in message
    assert len(message) < 1000


@pytest.mark.parametrize("value,expected", [("", True), ("lane: false", False), ("lane: true", True)])
def test_the_delivery_lane_is_on_unless_turned_off(tmp_path, value, expected):
    path = write_config(tmp_path, config_text() + f"delivery: {{{value}}}\n")
    assert load_config(path, env={"HOOK_SECRET": "x"}).delivery.lane is expected


def test_a_delivery_lane_that_is_not_a_boolean_is_an_error(tmp_path):
    path = write_config(tmp_path, config_text() + 'delivery: {lane: "sometimes"}\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={"HOOK_SECRET": "x"})
    assert "delivery.lane: expected true or false, got 'sometimes'" in str(exc.value)
