"""`make bench`: run each benchmark script in its own process and print its figures. Benchmarks are
measurements, never pass/fail speed tests; a non-zero exit means a benchmark found a correctness problem
(e.g. state that did not shrink back). Add a new benchmark script to BENCHMARKS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("ingest.py", "e2e.py", "rules.py", "stateful.py", "redis_scaling.py")


def main() -> int:
    failed = [name for name in BENCHMARKS if (HERE / name).exists()
              and subprocess.run([sys.executable, str(HERE / name)], check=False).returncode != 0]
    for name in failed:
        print(f"bench/{name} reported a problem (exit status non-zero)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
