"""Shared test helpers: signed requests, free ports, a real `idhooks serve` process, Redis availability.

Area-specific helpers live in their own test modules; keep this file to what every area needs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from engine import catalog
from engine.verify.signature import sign

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-webhook-secret-3f9c"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sample_event(alias: str = "login.loginFailed", **body_overrides: Any) -> dict[str, Any]:
    """A catalog sample with a fresh jti and iat (now), body fields overridden at the top level."""
    event = catalog.entries()[alias].sample()
    event["jti"] = str(uuid.uuid4())
    event["iat"] = int(time.time() * 1000)
    body = next(iter(event["events"].values()))
    body.update(body_overrides)
    return event


def signed(event: dict[str, Any] | bytes, secret: str = SECRET, header: str = "X-Hub-Signature",
           algorithm: str = "sha256") -> tuple[bytes, dict[str, str]]:
    """(body, headers) as the hub would send them."""
    body = event if isinstance(event, bytes) else json.dumps(event, separators=(", ", ": ")).encode()
    return body, {"Content-Type": "application/json", header: sign(body, secret, algorithm)}


def thread_affinities(pid: int) -> dict[str, set[frozenset[int]]]:
    """The CPUs each thread of process `pid` may run on, by thread name (Linux /proc; server.cpu_pinning)."""
    found: dict[str, set[frozenset[int]]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            found.setdefault(name, set()).add(frozenset(os.sched_getaffinity(int(task.name))))
        except OSError:  # the thread ended meanwhile
            pass
    return found


def write_config(directory: Path, text: str) -> Path:
    path = directory / "config.yaml"
    path.write_text(text)
    return path


def wire_vector(name: str) -> bytes:
    """A byte-exact signed body from engine/catalog/wire/ (see engine/catalog/README.md for the signatures)."""
    return (catalog.CATALOG_DIR / "wire" / name).read_bytes()


def basic_config(directory: Path, *, port: int = 8080, store_url: str | None = None,
                 rules_dir: str = "rules", extra: str = "") -> Path:
    """A config with one webhook 'asgardeo' (secret SECRET from a file) and the given rules folder."""
    (directory / "secret").write_text(SECRET)
    (directory / rules_dir).mkdir(exist_ok=True)
    store_url = store_url or "sqlite:///var/idhooks.db"
    return write_config(directory, f"""
server: {{host: 127.0.0.1, port: {port}, max_body_bytes: 1048576}}
store: {{url: "{store_url}"}}
webhooks:
  - name: asgardeo
    path: /webhooks/asgardeo
    secret_file: secret
    topics: ["acme.*.schema.wso2.v1.event.*"]
rules: {{paths: [{rules_dir}/]}}
{extra}
""")


class ServerProcess:
    """A real `idhooks serve` subprocess on a free port."""

    def __init__(self, config: Path, port: int, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.config, self.port = config, port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = config.parent / f"serve-{port}.log"
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--config", str(config), "--port", str(port), *args],
            cwd=config.parent, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self.wait_ready()
        except BaseException:  # a server that never became healthy must not outlive the test
            self.stop()
            raise

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"idhooks serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # bound, still starting (--processes)
                pass
            time.sleep(0.05)
        raise RuntimeError(f"idhooks serve did not become healthy:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._log.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Factory: `serve(config_path)` starts a real server; every one started is stopped afterwards."""
    started: list[ServerProcess] = []

    def start(config: Path, port: int | None = None, env: dict[str, str] | None = None,
              args: tuple[str, ...] = ()) -> ServerProcess:
        server = ServerProcess(config, port or free_port(), env, args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def redis_url() -> str:
    return os.environ.get("IDHOOKS_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_available() -> str:
    """The test Redis URL; skips with a reason when no server answers, fails in CI (IDHOOKS_REQUIRE_REDIS)."""
    try:
        import redis as redis_lib

        redis_lib.Redis.from_url(redis_url(), socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable Redis here"
        if os.environ.get("IDHOOKS_REQUIRE_REDIS") or os.environ.get("CI"):
            pytest.fail(f"Redis is required in CI but {redis_url()} does not answer: {exc}")
        pytest.skip(f"no Redis server answers at {redis_url()}: {exc}")
    return redis_url()


@pytest.fixture(scope="session")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A TLS-only redis-server of this test session's own that requires a client certificate (rediss://)."""
    from tests.redisutil import PrivateRedis

    server = PrivateRedis(tmp_path_factory.mktemp("tls-redis"), free_port(), tls=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_store(redis_available: str, tmp_path: Path) -> Iterator[Any]:
    """A RedisStore of a new deployment (its own group) on the test Redis; its keys are deleted afterwards."""
    from tests.redisutil import delete_group, open_redis_store

    store = open_redis_store(redis_available, tmp_path / "redis-spool")
    yield store
    delete_group(store)
    store.close()


def provide_secret_files(text: str, folder: Path) -> str:
    """Create the files a config text's `*_file:` keys read, inside `folder`; absolute paths
    (/run/secrets/...) are redirected there too. Returns the config text to use."""
    for name in re.findall(r"_file:\s*([\w./-]+)", text):
        target = folder / name.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("value-from-file\n")
        if name.startswith("/"):
            text = text.replace(name, str(target))
    return text


def env_names(text: str) -> set[str]:
    """The ${VAR} names a config text reads."""
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this test session's own on the machine's PostgreSQL (tests.pgutil.ADMIN_URL), dropped at the
    end; None-safe: the first test that needs it skips (or fails in CI) when no server answers."""
    from tests.pgutil import ADMIN_URL, admin, with_database

    name = f"idhooks_test_{uuid.uuid4().hex[:12]}"
    try:
        admin(ADMIN_URL, f"CREATE DATABASE {name}")
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable PostgreSQL here"
        yield f"unavailable: {ADMIN_URL} does not answer: {exc}"
        return
    yield with_database(ADMIN_URL, name)
    admin(ADMIN_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_available(postgres_database: str) -> str:
    """The URL of the session's test database; skips with a reason when no server answers, fails in CI
    (IDHOOKS_REQUIRE_POSTGRES)."""
    from tests.pgutil import unavailable

    if postgres_database.startswith("unavailable: "):
        unavailable(postgres_database.removeprefix("unavailable: "))
    return postgres_database


@pytest.fixture
def postgres_store(postgres_available: str, tmp_path: Path) -> Iterator[Any]:
    """A PostgresStore of a new deployment (its own schema) in the session's database; dropped afterwards."""
    from tests.pgutil import drop_group, open_postgres_store

    store = open_postgres_store(postgres_available, tmp_path / "postgres-spool")
    yield store
    drop_group(store)
    store.close()
