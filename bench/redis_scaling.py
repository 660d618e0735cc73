"""Redis scale-out benchmark (issue 6): accepted events/s with 1 and with 2 `idhooks serve` processes sharing
one Redis, and one process on SQLite for reference, in the same run. Prints the scaling ratio and checks that
every accepted event was stored exactly once. Not a timed test: the figures go to docs/deployment.md.

    python bench/redis_scaling.py [--requests 4000] [--concurrency 16] [--redis redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import SECRET, bench_idhooks, make_bodies, requests_for
from bench.loadgen import LoadResult, run_load
from bench.procs import Proc, free_port, write_bench_config
from engine.store.redis import RedisStore

THREADS = 8
WARMUP = 200


def start(folder: Path, url: str, group: str) -> tuple[Proc, int]:
    """One `idhooks serve` of deployment `group`, in its own working folder."""
    folder.mkdir()
    port = free_port()
    config = write_bench_config(folder, port, THREADS, SECRET, url)
    config.write_text(config.read_text().replace(
        f'store: {{url: "{url}"}}', f'store: {{url: "{url}", group: "{group}", spool_dir: spool}}'))
    return Proc(["-m", "engine", "serve", "--config", str(config)], port, cwd=folder), port


def load(ports: list[int], count: int, concurrency: int) -> tuple[float, dict[int, int]]:
    """Send `count` events split evenly over the processes at once; (events/s overall, statuses)."""
    share = count // len(ports)
    batches = [requests_for(port, make_bodies(share)) for port in ports]
    results: list[LoadResult] = []

    def send(port: int, batch: list[bytes]) -> None:
        results.append(run_load("127.0.0.1", port, batch, max(1, concurrency // len(ports))))

    threads = [threading.Thread(target=send, args=pair) for pair in zip(ports, batches)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    statuses: dict[int, int] = {}
    for result in results:
        for status, n in result.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return share * len(ports) / seconds, statuses


def bench_redis(url: str, processes: int, count: int, concurrency: int) -> tuple[float, dict[int, int], int]:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        servers = [start(Path(tmp) / f"p{i}", url, group) for i in range(processes)]
        try:
            load([port for _, port in servers], WARMUP * processes, concurrency)
            rate, statuses = load([port for _, port in servers], count, concurrency)
        finally:
            for proc, _ in servers:
                proc.stop()
        store = RedisStore(url, group=group, spool_dir=Path(tmp) / "check")
        try:
            stored = sum(store.stats().events.values()) - WARMUP * processes
            keys = list(store.redis.scan_iter(match=store.prefix + "*", count=1000))
            store.redis.delete(*keys)
        finally:
            store.close()
    return rate, statuses, stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15", help="a Redis to use (a unique group)")
    args = parser.parse_args()
    print(f"redis scaling: {args.requests} signed ~1.5 KB events, concurrency {args.concurrency}, "
          f"waitress threads {THREADS}")
    reference, stored_sqlite = bench_idhooks(THREADS, args.requests, args.concurrency)
    print(f"  {'SQLite, 1 process':<21} {reference.throughput:8.0f} events/s  statuses {reference.statuses}")
    ok = stored_sqlite == reference.statuses.get(202, 0) + min(500, args.requests)
    rates = {}
    for processes in (1, 2):
        rate, statuses, stored = bench_redis(args.redis, processes, args.requests, args.concurrency)
        rates[processes] = rate
        accepted = statuses.get(202, 0)
        ok = ok and stored == accepted
        label = f"Redis, {processes} process" + ("es" if processes > 1 else "")
        print(f"  {label:<21} {rate:8.0f} events/s  "
              f"statuses {statuses}  stored {stored} of {accepted} accepted")
    print(f"scaling 2 processes / 1 process on Redis: {rates[2] / rates[1]:.2f}x; "
          f"Redis 1 process / SQLite: {rates[1] / reference.throughput:.2f}x")
    print("every accepted event stored once" if ok else "MISMATCH between accepted and stored events")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
