"""PostgreSQL over TLS, against a cluster this test session starts (ssl=on, `hostssl` lines only) with a server
certificate from a CA the test makes: the right CA connects, a wrong CA and a plain connection are refused."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from engine.config.settings import load_config
from engine.errors import StoreError
from engine.store import open_store
from engine.store.base import ACCEPTED, DUPLICATE, NewJob
from engine.store.postgres import PostgresStore
from tests.conftest import basic_config, free_port
from tests.pgutil import PrivateCluster
from tests.test_store_contract import LEASE, T0, WINDOW, event

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(free_port(), tls=True)
    cluster.start()
    yield cluster
    cluster.destroy()


def test_the_right_ca_connects_and_the_store_works(tls_cluster: PrivateCluster, tmp_path: Path) -> None:
    store = PostgresStore(tls_cluster.url, group="tls", spool_dir=tmp_path, ca_file=tls_cluster.ca)
    other_process = PostgresStore(tls_cluster.url, group="tls", spool_dir=tmp_path / "b", ca_file=tls_cluster.ca)
    woken = threading.Event()
    try:
        other_process.on_new_jobs(woken.set)  # LISTEN over TLS too
        assert other_process.listening.wait(30)
        assert store.ingest(event("e"), WINDOW) == ACCEPTED
        assert store.ingest(event("e"), WINDOW) == DUPLICATE
        assert [e.jti for e in store.claim_events("w", LEASE, 10, T0)] == ["e"]
        store.complete_event("e", [], [NewJob("e:r:0", "slack", "slack", {})], T0)
        assert [j.key for j in store.claim_jobs("w", LEASE, 10, T0)] == ["e:r:0"]
        assert woken.wait(5)
        with store._tx("test") as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone()["ssl"] is True
    finally:
        other_process.close()
        store.close()


def test_a_certificate_from_another_ca_is_refused(tls_cluster: PrivateCluster, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot connect: .*certificate verify failed"):
        PostgresStore(tls_cluster.url, group="tls", spool_dir=tmp_path, ca_file=tls_cluster.other_ca)


def test_a_connection_without_tls_is_refused(tls_cluster: PrivateCluster, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no pg_hba.conf entry .*no encryption"):
        PostgresStore(tls_cluster.url + "?sslmode=disable", group="tls", spool_dir=tmp_path)


def test_store_ca_file_in_the_config(tls_cluster: PrivateCluster, tmp_path: Path) -> None:
    config_path = basic_config(tmp_path, store_url=tls_cluster.url)
    config_path.write_text(config_path.read_text().replace("store: {url:", f"store: {{ca_file: {tls_cluster.ca}, url:"))
    config = load_config(config_path)
    assert config.store.ca_file == tls_cluster.ca
    store = open_store(config.store)
    try:
        assert isinstance(store, PostgresStore) and store.schema_version() > 0
    finally:
        store.close()


def test_a_client_certificate_logs_in_where_the_server_requires_one(tls_cluster: PrivateCluster,
                                                                    tmp_path: Path) -> None:
    url = tls_cluster.url.replace("postgres@", "certuser@")
    with pytest.raises(StoreError, match="certificate authentication failed|connection requires a valid client"):
        PostgresStore(url, group="cert", spool_dir=tmp_path, ca_file=tls_cluster.ca)
    store = PostgresStore(url, group="cert", spool_dir=tmp_path, ca_file=tls_cluster.ca,
                          cert_file=tls_cluster.client_cert, key_file=tls_cluster.client_key)
    try:
        assert store.ingest(event("by-cert"), WINDOW) == ACCEPTED
    finally:
        store.close()
