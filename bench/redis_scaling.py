"""Store backend comparison (issues 6 and 15): accepted events/s of `idhooks serve` on each backend with 1 and
2 processes (the shared backends: Redis and PostgreSQL, as one deployment of a unique group), and one process on
SQLite, in the same run. Checks that every accepted event was stored exactly once. Not a timed test: the figures
go to docs/deployment.md.

    python bench/redis_scaling.py [--requests 4000] [--concurrency 16] [--redis redis://127.0.0.1:6379/15]
                                  [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Give `--redis ''` or `--postgres ''` to leave that backend out.
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

from bench import ingest
from bench.ingest import SECRET, Load, bench_idhooks, make_bodies, requests_for
from bench.loadgen import LoadResult, run_load
from bench.procs import Proc, forget_deployment, free_port, open_deployment, shared_store, write_bench_config

THREADS = 8
WARMUP = 200


def start(folder: Path, url: str, group: str) -> tuple[Proc, int]:
    """One `idhooks serve` of deployment `group`, in its own working folder."""
    folder.mkdir()
    port = free_port()
    config = write_bench_config(folder, port, THREADS, SECRET, url)
    shared_store(config, url, group)
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


def bench_shared(url: str, processes: int, count: int, concurrency: int) -> tuple[float, dict[int, int], int]:
    """(events/s, statuses, events stored by the measured load) for `processes` processes sharing `url`."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            servers = [start(Path(tmp) / f"p{i}", url, group) for i in range(processes)]
            try:
                load([port for _, port in servers], WARMUP * processes, concurrency)
                rate, statuses = load([port for _, port in servers], count, concurrency)
            finally:
                for proc, _ in servers:
                    proc.stop()
            store = open_deployment(url, group, Path(tmp))
            try:
                stored = sum(store.stats().events.values()) - WARMUP * processes
            finally:
                store.close()
        finally:
            forget_deployment(url, group, Path(tmp))
    return rate, statuses, stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15", help="a Redis to use (a unique group)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL database to use (a unique schema, dropped afterwards)")
    args = parser.parse_args()
    print(f"store backends: {args.requests} signed ~1.5 KB events, concurrency {args.concurrency}, "
          f"waitress threads {THREADS}")
    # the same Python load generator as the shared stores' runs below (bench/loadgen.py), so the rates compare
    reference, stored_sqlite = bench_idhooks(THREADS, Load(None, make_bodies(args.requests), 0, args.concurrency))
    print(f"  {'SQLite, 1 process':<26} {reference.throughput:8.0f} events/s  statuses {reference.statuses}")
    ok = stored_sqlite == reference.statuses.get(202, 0) + ingest.WARMUP
    for name, url in (("Redis", args.redis), ("PostgreSQL", args.postgres)):
        if not url:
            continue
        rates = {}
        for processes in (1, 2):
            rate, statuses, stored = bench_shared(url, processes, args.requests, args.concurrency)
            rates[processes] = rate
            accepted = statuses.get(202, 0)
            ok = ok and stored == accepted
            label = f"{name}, {processes} process" + ("es" if processes > 1 else "")
            print(f"  {label:<26} {rate:8.0f} events/s  statuses {statuses}  stored {stored} of {accepted} accepted")
        print(f"  {name}: 2 processes / 1 process {rates[2] / rates[1]:.2f}x; "
              f"1 process / SQLite {rates[1] / reference.throughput:.2f}x")
    print("every accepted event stored once" if ok else "MISMATCH between accepted and stored events")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
