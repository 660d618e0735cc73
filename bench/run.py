"""`make bench`: run each benchmark script in its own process and print its figures. Benchmarks are
measurements, never pass/fail speed tests; a non-zero exit means a benchmark found a correctness problem
(e.g. state that did not shrink back, or an event not delivered). Add a new benchmark script, with its
arguments, to BENCHMARKS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REDIS = "redis://127.0.0.1:6379/15"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCHMARKS = (("ingest.py",), ("e2e.py",), ("e2e.py", "--saturate"), ("e2e.py", "--store", REDIS, "--processes", "2"),
              ("e2e.py", "--store", POSTGRES, "--processes", "2"), ("rules.py",), ("stateful.py",),
              ("redis_scaling.py", "--redis", REDIS, "--postgres", POSTGRES), ("queue_drain.py", "--redis", REDIS),
              ("postgres_retention.py", "--postgres", POSTGRES), ("stages.py",))


def main() -> int:
    failed = [" ".join(bench) for bench in BENCHMARKS
              if subprocess.run([sys.executable, str(HERE / bench[0]), *bench[1:]], check=False).returncode != 0]
    for command in failed:
        print(f"bench/{command} reported a problem (exit status non-zero)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
