"""A threshold rule fed alternately (and concurrently) through two `idhooks serve` processes on one PostgreSQL
fires exactly once, at the right count: the window is shared and updated in one transaction."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import free_port, sample_event
from tests.pgutil import drop_group, open_postgres_store, postgres_config, unique_group
from tests.test_redis_serve import post, wait_until
from tests.test_redis_stateful import RULE

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_threshold_fed_through_two_processes_fires_once(tmp_path: Path, serve: Callable[..., Any],
                                                        postgres_available: str) -> None:
    group = unique_group()
    servers = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        port = free_port()
        config = postgres_config(folder, postgres_available, group, port)
        (folder / "rules" / "brute.yaml").write_text(RULE)
        servers.append(serve(config, port))
    store = open_postgres_store(postgres_available, tmp_path / "check", group)
    try:
        events = [sample_event("login.loginFailed") for _ in range(9)]
        with ThreadPoolExecutor(max_workers=4) as pool:  # alternately through both, several at once
            codes = list(pool.map(lambda i: post(servers[i % 2].url, events[i])[0], range(9)))
        assert codes == [202] * 9
        assert wait_until(lambda: store.stats().events, {"processed": 9}, 30) == {"processed": 9}
        jobs = store.list_jobs(limit=100)
        assert [job.message for job in jobs] == [{"message": "ALERT 5 failed logins for jane.doe@example.com"}]
    finally:
        drop_group(store)
        store.close()
