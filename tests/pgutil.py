"""Helpers for tests against PostgreSQL: a database of this test session's own on the machine's server (dropped
at the end), a schema (store.group) per test, and a private cluster (initdb on a free port) that a test may stop,
restart or run with TLS without touching the shared server."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from engine.store.postgres import PostgresStore

ADMIN_URL = os.environ.get("IDHOOKS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
"""The machine's PostgreSQL 15 (trust authentication); tests create their own database there."""


def required() -> bool:
    return bool(os.environ.get("IDHOOKS_REQUIRE_POSTGRES") or os.environ.get("CI"))


def unavailable(reason: str) -> None:
    """Skip with a reason, or fail in CI (IDHOOKS_REQUIRE_POSTGRES)."""
    if required():
        pytest.fail(f"PostgreSQL is required in CI but {reason}")
    pytest.skip(reason)


def admin(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(statement)


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name`."""
    head, _, _ = url.rpartition("/")
    return f"{head}/{name}"


def unique_group() -> str:
    return f"idhooks-test-{uuid.uuid4().hex[:12]}"


def open_postgres_store(url: str, spool_dir: Path, group: str | None = None, **options: Any) -> PostgresStore:
    """A store of a new deployment (or of `group`); `store.reopen(spool_dir)` opens the same deployment again as
    another process would."""
    group = group or unique_group()
    store = PostgresStore(url, group=group, spool_dir=spool_dir, **options)
    store.reopen = (  # type: ignore[attr-defined]
        lambda spool: PostgresStore(url, group=group, spool_dir=spool, **options))
    return store


def drop_group(store: PostgresStore) -> None:
    """Drop the deployment's schema (and nothing else of the shared test database)."""
    with store._tx("dropping a test schema") as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE')


def postgres_config(directory: Path, url: str, group: str, port: int, extra: str = "",
                    store_extra: dict[str, str] | None = None) -> Path:
    """tests.conftest.basic_config with the PostgreSQL store of deployment `group` and a spool in `directory`."""
    from tests.conftest import basic_config

    config = basic_config(directory, port=port, store_url=url, extra=extra)
    more = "".join(f', {key}: "{value}"' for key, value in (store_extra or {}).items())
    text = config.read_text().replace(f'store: {{url: "{url}"}}',
                                      f'store: {{url: "{url}", group: "{group}", spool_dir: spool{more}}}')
    config.write_text(text)
    return config


def binaries() -> tuple[str, str]:
    """(initdb, pg_ctl) of the installed PostgreSQL; skips without them, fails in CI."""
    found = []
    for name in ("initdb", "pg_ctl"):
        path = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
        if path is None:
            unavailable(f"the PostgreSQL server programs ({name}) are not installed")
        found.append(str(path))
    return found[0], found[1]


class PrivateCluster:
    """A PostgreSQL cluster of our own (initdb) on a free loopback port, trust authentication, fsync on. With
    `tls`, it takes only TLS connections from TCP (`hostssl` lines, ssl=on) with a server certificate for
    127.0.0.1 signed by a CA this class makes (`self.ca`); `self.other_ca` is an unrelated CA for testing
    refusal. The role `certuser` must log in with a client certificate (`self.client_cert`, `self.client_key`,
CN=certuser, a `hostssl ... cert` line). PostgreSQL refuses to run as root, so as root the cluster runs as
    the `postgres` user."""

    def __init__(self, port: int, tls: bool = False) -> None:
        self.port, self.tls = port, tls
        self.root = Path(tempfile.mkdtemp(prefix="idhooks-pg-"))  # not under pytest's 0700 folders: the
        self.data = self.root / "data"                               # postgres user must reach it
        self.ca, self.other_ca = self.root / "ca.pem", self.root / "other-ca.pem"
        self.client_cert, self.client_key = self.root / "client.pem", self.root / "client.key"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, check=True, capture_output=True, text=True, user=self._user, timeout=120)

    def _make_certificates(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.fail("the TLS PostgreSQL test needs the openssl command (Debian package openssl)")
        d = self.root

        def ssl(*args: str) -> None:
            subprocess.run([openssl, *args], check=True, capture_output=True, cwd=d, timeout=60)

        for name in ("ca", "other-ca"):
            ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=idhooks test {name}",
                "-keyout", f"{name}.key", "-out", f"{name}.pem")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out",
            "server.csr")
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "ext.cnf", "-out", "server.pem")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=certuser", "-keyout", "client.key", "-out",
            "client.csr")
        ssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-out", "client.pem")
        (d / "client.key").chmod(0o600)

    def start(self) -> None:
        initdb, pg_ctl = binaries()
        if self._user:
            shutil.chown(self.root, self._user, self._user)
        if not self.data.exists():
            self._run(initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
            if self.tls:
                self._make_certificates()
                for name in ("server.pem", "server.key", "ca.pem"):
                    shutil.copy(self.root / name, self.data / name)
                    if self._user:
                        shutil.chown(self.data / name, self._user, self._user)
                (self.data / "server.key").chmod(0o600)
                (self.data / "pg_hba.conf").write_text(
                    "local all all trust\nhostssl all certuser 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust\n"
                    "hostssl all all ::1/128 trust\n")
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = "
                           f"'{self.root}'\nfsync = on\nmax_connections = 60\n")
                if self.tls:
                    conf.write("ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n"
                               "ssl_ca_file = 'ca.pem'\n")
            self._run(pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60", "start")
            self._run("psql", "-h", str(self.root), "-p", str(self.port), "-U", "postgres", "-c",
                      "CREATE ROLE certuser LOGIN SUPERUSER")
            return
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash (no checkpoint): what was committed must survive it."""
        _, pg_ctl = binaries()
        if (self.data / "postmaster.pid").exists():
            self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        tls = {"sslmode": "verify-full", "sslrootcert": str(self.ca)} if self.tls else {}
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2, **tls).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
