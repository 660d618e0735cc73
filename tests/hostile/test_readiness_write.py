"""`/readyz` proves a real write (issue 12, item 6): when the store's file cannot grow (here: a file size limit
of one byte set on the running `idhooks serve`, as a full disk would), /readyz answers 503 like intake does,
and ready again once writes succeed."""

from __future__ import annotations

import resource
from contextlib import contextmanager

import pytest
import requests

from tests.conftest import basic_config, sample_event, signed


@contextmanager
def file_size_limit(pid: int, size: int):
    """No file of process `pid` can be written beyond `size` bytes (Python ignores SIGXFSZ: writes fail with EFBIG)."""
    before = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, before[1]))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, before)


@pytest.mark.slow
def test_readyz_fails_while_the_store_cannot_commit(tmp_path, serve):
    server = serve(basic_config(tmp_path))
    url = server.url + "/webhooks/asgardeo"
    first, first_headers = signed(sample_event())
    assert requests.post(url, data=first, headers=first_headers, timeout=10).status_code == 202
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
    with file_size_limit(server.proc.pid, 1):
        ready = requests.get(server.url + "/readyz", timeout=30)
        body, headers = signed(sample_event())
        refused = requests.post(url, data=body, headers=headers, timeout=30)
    assert refused.status_code == 503
    assert ready.status_code == 503 and ready.json()["store"].startswith("error: ")
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
    assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 202
