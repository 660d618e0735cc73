"""Helpers for tests against the real Redis: a unique group per test, and removing only that group's keys."""

from __future__ import annotations

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


def open_redis_store(url: str, spool_dir: Path, group: str | None = None) -> RedisStore:
    return RedisStore(url, group=group or unique_group(), spool_dir=spool_dir)


def delete_group(store: RedisStore) -> None:
    """Delete every key under the store's prefix (and nothing else on the shared test database)."""
    keys = list(store.redis.scan_iter(match=store.prefix + "*", count=1000))
    if keys:
        store.redis.delete(*keys)


class PrivateRedis:
    """A redis-server of our own on a free loopback port, which a test may stop and start again (an outage)
    without touching the shared test server. AOF with `appendfsync always`, as in a deployment that must
    lose nothing, so a restart keeps what was written."""

    def __init__(self, directory: Path, port: int, password: str | None = None) -> None:
        self.directory, self.port, self.password = directory, port, password
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "yes",
                                      "--appendfsync", "always",
                                      *(["--requirepass", self.password] if self.password else []), "--dir", str(self.directory)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2)
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

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def redis_config(directory: Path, url: str, group: str, port: int, extra: str = "") -> Path:
    """tests.conftest.basic_config with the Redis store of deployment `group` and a spool in `directory`."""
    from tests.conftest import basic_config

    config = basic_config(directory, port=port, store_url=url, extra=extra)
    text = config.read_text().replace(f'store: {{url: "{url}"}}',
                                      f'store: {{url: "{url}", group: "{group}", spool_dir: spool}}')
    config.write_text(text)
    return config
