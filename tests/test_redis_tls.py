"""A Redis reached over TLS (`rediss://`): the server's certificate is always verified (a private CA comes from
`store.ca_file`), a client certificate is sent when configured, and a misconfiguration is a clear error.
The whole store contract suite also runs over TLS (tests/test_store_contract.py, the `rediss` backend)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest

from engine.cli import main
from engine.config.settings import load_config
from engine.errors import ConfigError, StoreError
from engine.store import open_store
from engine.store.redis import RedisStore
from engine.store.sqlite import SQLiteStore
from tests.conftest import sample_event, write_config
from tests.peers import HttpPeer, http_peer  # noqa: F401 - fixture
from tests.redisutil import PrivateRedis, delete_group, open_redis_store, tls_files, unique_group
from tests.test_redis_serve import post, start_server, wait_until
from tests.test_store_contract import WINDOW, event

pytestmark = pytest.mark.redis


def store_config(tmp_path: Path, store: str) -> Path:
    (tmp_path / "secret").write_text("s3cret")
    return write_config(tmp_path, f"""
store: {store}
webhooks:
  - {{name: asgardeo, path: /webhooks/asgardeo, secret_file: secret}}
""")


def test_the_servers_certificate_is_verified(tls_redis: PrivateRedis, tmp_path: Path) -> None:
    """Without the private CA the self-signed certificate is refused: no fallback to an unverified link."""
    with pytest.raises(StoreError) as err:
        RedisStore(tls_redis.url, group=unique_group(), spool_dir=tmp_path / "spool")
    assert str(err.value).startswith(f"Redis store {tls_redis.url}: reading the schema version: ")
    assert "certificate verify failed" in str(err.value)


def tls_config(tmp_path: Path, server: PrivateRedis, group: str) -> Path:
    """A config naming the TLS files relative to its own folder, as a user would."""
    folder = tmp_path / "tls"
    folder.mkdir(parents=True)
    (folder / "ca.pem").write_bytes(server.cert.read_bytes())
    (folder / "client.pem").write_bytes(server.cert.read_bytes())
    (folder / "client.key").write_bytes(server.key.read_bytes())
    return store_config(tmp_path, f'{{url: "{server.url}", group: {group}, ca_file: tls/ca.pem, '
                                  'cert_file: tls/client.pem, key_file: tls/client.key}')


def test_a_client_certificate_is_sent_when_configured(tls_redis: PrivateRedis, tmp_path: Path) -> None:
    """This server requires client certificates: the CA alone is not enough; the configured pair gets in."""
    with pytest.raises(StoreError) as err:
        RedisStore(tls_redis.url, group=unique_group(), spool_dir=tmp_path / "spool", ca_file=tls_redis.cert)
    assert str(err.value).startswith(f"Redis store {tls_redis.url}: reading the schema version: ")
    config = load_config(tls_config(tmp_path, tls_redis, unique_group()))
    assert config.store.ca_file == tmp_path / "tls" / "ca.pem"
    store = open_store(config.store)
    try:
        assert store.ingest(event("over-tls"), WINDOW) == "accepted"
        assert [e.jti for e in store.list_events()] == ["over-tls"]
    finally:
        delete_group(store)
        store.close()


@pytest.mark.parametrize(("store", "problem"), [
    ('{url: "redis://127.0.0.1:6379/0", ca_file: ca.pem}',
     "store.ca_file: only used with a TLS store URL: write rediss://HOST:PORT/DB"),
    ('{url: "rediss://127.0.0.1:6380/0", ca_file: missing.pem}', "store.ca_file: no such file: {dir}/missing.pem"),
    ('{url: "rediss://127.0.0.1:6380/0", cert_file: ca.pem}',
     "store.key_file: store.cert_file needs store.key_file: a client certificate and its private key go together"),
])
def test_tls_settings_are_checked_when_the_config_loads(tmp_path: Path, store: str, problem: str) -> None:
    (tmp_path / "ca.pem").write_text("not used: the config is refused first")
    with pytest.raises(ConfigError) as err:
        load_config(store_config(tmp_path, store))
    assert problem.format(dir=tmp_path) in str(err.value)


@pytest.mark.slow
def test_serve_over_tls_stores_and_delivers(tls_redis: PrivateRedis, tmp_path: Path, serve: Callable[..., Any],
                                            http_peer: HttpPeer) -> None:
    group = unique_group()
    folder = tmp_path / "proc"
    tls = {k: str(v) for k, v in tls_files(tls_redis).items()}
    server = start_server(folder, serve, tls_redis.url, group, http_peer.url, store_extra=tls)
    events = [sample_event() for _ in range(5)]
    assert [post(server.url, e)[0] for e in events] == [202] * 5
    store = open_redis_store(tls_redis.url, tmp_path / "check", group, **tls_files(tls_redis))
    try:
        statuses = wait_until(lambda: Counter(j.status for j in store.list_jobs()), Counter(done=5), 30)
        assert statuses == {"done": 5}, server.log()
    finally:
        delete_group(store)
        store.close()
    assert sorted(r.headers["Idempotency-Key"] for r in http_peer.requests) == \
        sorted(f"{e['jti']}:provision:0" for e in events)


def test_migrate_into_a_tls_redis(tls_redis: PrivateRedis, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    source = SQLiteStore(tmp_path / "old.db")
    source.ingest(event("kept"), WINDOW)
    source.close()
    group = unique_group()
    files = tls_files(tls_redis)
    code = main(["migrate", "--from", f"sqlite:///{tmp_path / 'old.db'}", "--to", tls_redis.url, "--group", group,
                 "--ca-file", str(files["ca_file"]), "--cert-file", str(files["cert_file"]),
                 "--key-file", str(files["key_file"]), "--retention", "100000d"])
    assert code == 0, capsys.readouterr().err
    store = open_redis_store(tls_redis.url, tmp_path / "check", group, **files)
    try:
        assert [e.jti for e in store.list_events()] == ["kept"]
    finally:
        delete_group(store)
        store.close()
