"""Load from wrk (Debian's `wrk` package), as in issue 14's measurements: a C load generator that takes a few
percent of a core where bench/loadgen.py (Python) takes most of one, so on a 2-core machine the servers under
test get the CPU a real sender would leave them.

wrk runs for a fixed time over `concurrency` keep-alive connections and sends the prepared requests in order
(bench/wrk_requests.lua): each event once while there are enough of them. Every benchmark that uses it
measures each system under the same wrk load in the same run, and falls back to bench/loadgen.py (saying so)
when wrk is missing and cannot be installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from bench.loadgen import LoadResult
from bench.peers import ensure_debian_program

SCRIPT = Path(__file__).resolve().parent / "wrk_requests.lua"
_RESULT = re.compile(r"RESULT requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+)")
_STATUS = re.compile(r"STATUS (\d+) (\d+)")


def ensure_wrk() -> str | None:
    """The `wrk` program (Debian's package), or None: the caller then uses bench/loadgen.py."""
    return ensure_debian_program("wrk", "as the load generator", "the Python load generator is used instead (it "
                                 "takes most of a core from the servers measured)")


def run_wrk(program: str, host: str, port: int, requests: list[bytes], concurrency: int,
            seconds: float) -> LoadResult:
    """Send the prepared raw requests for `seconds`, in order, and from the start again once all were sent
    (`repeated` counts those: a repeated event is a duplicate to idhooks, so benchmarks prepare enough).
    The result has the answered requests, their statuses and wrk's p50/p99 latency."""
    with tempfile.NamedTemporaryFile(prefix="idhooks-wrk-", suffix=".requests") as file:
        for request in requests:
            file.write(b"%d\n" % len(request))
            file.write(request)
        file.flush()
        out = subprocess.run([program, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
                              "-s", str(SCRIPT), f"http://{host}:{port}/"],
                             capture_output=True, text=True, check=False,
                             env={**os.environ, "WRK_REQUESTS": file.name})
    found = _RESULT.search(out.stdout)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed (exit {out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    answered, duration_us, p50_us, p99_us = (int(value) for value in found.groups())
    result = LoadResult(requests=answered, seconds=duration_us / 1e6,
                        statuses={int(code): int(n) for code, n in _STATUS.findall(out.stdout)})
    result.quantiles = {50.0: p50_us / 1e6, 99.0: p99_us / 1e6}
    result.repeated = max(0, answered - len(requests))
    return result
