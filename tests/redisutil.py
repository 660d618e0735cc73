"""Helpers for tests against the real Redis: a unique group per test, and removing only that group's keys."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

from engine.store.redis import RedisStore


def unique_group() -> str:
    return f"idhooks-test-{uuid.uuid4().hex[:12]}"


def open_redis_store(url: str, spool_dir: Path, group: str | None = None, **tls: Path) -> RedisStore:
    """A store of a new deployment (or of `group`). `store.reopen(spool_dir)` opens the same deployment again
    the same way (TLS files included), as another process would."""
    group = group or unique_group()
    store = RedisStore(url, group=group, spool_dir=spool_dir, **tls)
    store.reopen = lambda spool: RedisStore(url, group=group, spool_dir=spool, **tls)  # type: ignore[attr-defined]
    return store


def tls_files(server: PrivateRedis) -> dict[str, Path]:
    """store.ca_file, cert_file and key_file for a TLS PrivateRedis."""
    return {"ca_file": server.cert, "cert_file": server.cert, "key_file": server.key}


def delete_group(store: RedisStore) -> None:
    """Delete every key under the store's prefix (and nothing else on the shared test database)."""
    keys = list(store.redis.scan_iter(match=store.prefix + "*", count=1000))
    if keys:
        store.redis.delete(*keys)


def redis_server_binary() -> str:
    """The redis-server program; skips the test without it, fails in CI (IDHOOKS_REQUIRE_REDIS)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("IDHOOKS_REQUIRE_REDIS") or os.environ.get("CI"):
            pytest.fail("redis-server is required in CI but is not installed")
        pytest.skip("redis-server is not installed")
    return binary


class PrivateRedis:
    """A redis-server of our own on a free loopback port, which a test may stop and start again (an outage)
    without touching the shared test server. AOF with `appendfsync always`, as in a deployment that must
    lose nothing, so a restart keeps what was written."""

    def __init__(self, directory: Path, port: int, password: str | None = None, tls: bool = False,
                 replica_of: int | None = None) -> None:
        """With `tls`, the server takes only TLS connections and requires a client certificate; `self.cert`
        and `self.key` are a self-signed certificate for 127.0.0.1 that is the CA, the server's certificate
        and the client's. With `replica_of` (a port), it replicates that loopback server."""
        self.directory, self.port, self.password, self.tls = directory, port, password, tls
        self.replica_of = replica_of
        scheme = "rediss" if tls else "redis"
        self.url = f"{scheme}://{f':{password}@' if password else ''}127.0.0.1:{port}/0"
        self.cert, self.key = directory / "tls" / "cert.pem", directory / "tls" / "key.pem"
        self.proc: subprocess.Popen[bytes] | None = None

    def _make_certificate(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.fail("the TLS Redis test needs the openssl command (Debian package openssl) to make a certificate")
        self.cert.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(self.key), "-out", str(self.cert)],
                       check=True, capture_output=True)

    def start(self) -> None:
        binary = redis_server_binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        listen = ["--port", str(self.port)]
        if self.tls:
            if not self.cert.exists():
                self._make_certificate()
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.cert),
                      "--tls-key-file", str(self.key), "--tls-ca-cert-file", str(self.cert), "--tls-auth-clients", "yes"]
        if self.replica_of is not None:
            listen += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.proc = subprocess.Popen([binary, *listen, "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "yes",
                                      "--appendfsync", "always",
                                      *(["--requirepass", self.password] if self.password else []), "--dir", str(self.directory)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
            finally:
                client.close()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def client(self) -> redis.Redis:
        """A client of this server (TLS and password included)."""
        tls = {"ssl": True, "ssl_ca_certs": str(self.cert), "ssl_certfile": str(self.cert),
               "ssl_keyfile": str(self.key)} if self.tls else {}
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_connect_timeout=0.2,
                           **tls)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class PrivateSentinel:
    """A Redis Sentinel of our own watching one loopback primary as `master`; it fails over within a few
    seconds of the primary dying (quorum 1, down after 1 s)."""

    def __init__(self, directory: Path, port: int, primary_port: int, master: str = "idhooks-test") -> None:
        self.directory, self.port, self.master = directory, port, master
        self.primary_port = primary_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, decode_responses=True)

    def start(self) -> None:
        binary = redis_server_binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "sentinel.conf"  # Sentinel rewrites it as it learns
        config.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
                          f"sentinel monitor {self.master} 127.0.0.1 {self.primary_port} 1\n"
                          f"sentinel down-after-milliseconds {self.master} 1000\n"
                          f"sentinel failover-timeout {self.master} 5000\n")
        self.proc = subprocess.Popen([binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis sentinel on port {self.port} did not start")

    def primary(self) -> int:
        """The port of the primary Sentinel names now."""
        return int(self.client.sentinel_get_master_addr_by_name(self.master)[1])

    def replicas(self) -> int:
        """How many replicas Sentinel has found (it learns them from the primary's INFO, every ~10 s)."""
        return len(self.client.sentinel_slaves(self.master))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def redis_config(directory: Path, url: str, group: str, port: int, extra: str = "",
                 store_extra: dict[str, str] | None = None) -> Path:
    """tests.conftest.basic_config with the Redis store of deployment `group` and a spool in `directory`;
    `store_extra` adds store settings."""
    from tests.conftest import basic_config

    config = basic_config(directory, port=port, store_url=url, extra=extra)
    more = "".join(f', {key}: "{value}"' for key, value in (store_extra or {}).items())
    text = config.read_text().replace(f'store: {{url: "{url}"}}',
                                      f'store: {{url: "{url}", group: "{group}", spool_dir: spool{more}}}')
    config.write_text(text)
    return config
