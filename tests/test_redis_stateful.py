"""A threshold rule fed alternately (and concurrently) through two `idhooks serve` processes on one Redis
fires exactly once, at the right count: the window is shared and updated atomically."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import free_port, sample_event
from tests.redisutil import delete_group, open_redis_store, redis_config, unique_group
from tests.test_redis_serve import post, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.redis]

RULE = """rules:
  - id: brute-force-user
    event: login.loginFailed
    threshold: {count: 5, within: 10m, group_by: [claims.username]}
    suppress: {for: 30m}
    actions:
      - log: {message: "ALERT {{ count }} failed logins for {{ group[0] }}"}
"""


def test_threshold_fed_through_two_processes_fires_once(tmp_path: Path, serve: Callable[..., Any],
                                                        redis_available: str) -> None:
    group = unique_group()
    servers = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        port = free_port()
        config = redis_config(folder, redis_available, group, port)
        (folder / "rules" / "brute.yaml").write_text(RULE)
        servers.append(serve(config, port))
    store = open_redis_store(redis_available, tmp_path / "check", group)
    try:
        events = [sample_event("login.loginFailed") for _ in range(9)]
        with ThreadPoolExecutor(max_workers=4) as pool:  # alternately through both, several at once
            codes = list(pool.map(lambda i: post(servers[i % 2].url, events[i])[0], range(9)))
        assert codes == [202] * 9
        assert wait_until(lambda: store.stats().events, {"processed": 9}, 30) == {"processed": 9}
        jobs = store.list_jobs(limit=100)
        assert [job.message for job in jobs] == \
            [{"message": "ALERT 5 failed logins for jane.doe@example.com"}]
    finally:
        delete_group(store)
        store.close()
