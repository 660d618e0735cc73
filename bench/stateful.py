"""Benchmark (not a test): events/s through a threshold rule with 100,000 distinct group keys, and the
store's state size before and after the windows expire (it must shrink back).

    python bench/stateful.py [--groups N] [--store sqlite|redis] [--redis-url URL]

Every event opens a new group (the worst case: a flood of random usernames), under the default cap.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.match.stateful.decide import Observation, evaluate
from engine.match.stateful.specs import StatefulSpec, Threshold

T0 = 1_700_000_000.0
SPEC = StatefulSpec(threshold=Threshold(count=5, within=600, group_by=("claims.username",)))


def open_store(kind: str, folder: Path, redis_url: str) -> Any:
    if kind == "sqlite":
        from engine.store.sqlite import SQLiteStore

        return SQLiteStore(folder / "bench.db")
    from engine.store.redis import RedisStore

    return RedisStore(redis_url, group=f"bench-stateful-{uuid.uuid4().hex[:8]}", spool_dir=folder / "spool")


def run(store: Any, groups: int) -> dict[str, float]:
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(groups):
        event = Observation(jti=f"e{i}", time=T0 + i * 0.001, group=(f"user-{i}",), item={"n": i})
        evaluate(store, "brute-force-user", SPEC, event, T0 + i * 0.001)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    size_full = store.state_size()
    expired = T0 + groups * 0.001 + SPEC.threshold.within + SPEC.threshold.late + 1
    started = time.perf_counter()
    store.prune_state(expired)
    return {"events": groups, "events_per_s": groups / elapsed, "cpu_s": cpu, "size_full": size_full,
            "prune_s": time.perf_counter() - started, "size_after": store.state_size()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(args.store, Path(folder), args.redis_url)
        try:
            figures = run(store, args.groups)
        finally:
            store.close()
    print(f"stateful ({args.store}): {figures['events']:,} events, one new group each: "
          f"{figures['events_per_s']:,.0f} events/s; state {figures['size_full']:,} rows/keys while the windows "
          f"are open, {figures['size_after']:,} after they expire (pruned in {figures['prune_s']:.2f} s)")
    print(f"  (wall clock; this process used {figures['cpu_s']:.1f} s CPU; 1-minute load average of the machine: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0 if figures["size_after"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
