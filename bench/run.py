"""`make bench`: run every benchmark module in this folder (each has a `main(argv) -> int`) and print its
figures. Benchmarks are measurements, never pass/fail speed tests; a non-zero exit means a benchmark found
a correctness problem (e.g. state that did not shrink back)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failures = 0
    for path in sorted(HERE.glob("*.py")):
        if path.name == "run.py":
            continue
        spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        if hasattr(module, "main"):
            failures += bool(module.main([]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
