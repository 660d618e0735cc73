"""Delivery queue benchmark (issues 4 and 6): how fast `idhooks serve` drains a backlog of queued `http` jobs to
a loopback sink: one process on SQLite, then one and two processes sharing the Redis stream queue. The baseline,
measured in the same run, is the same number of POSTs sent straight to the sink by as many processes, each with
as many threads as an idhooks process has delivery workers, with no queue at all. Prints jobs/s, the ratio to the baseline, and checks
that every job arrived exactly once. Not a timed test.

    python bench/queue_drain.py [--jobs 4000] [--redis redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import Proc, free_port, write_bench_config
from bench.sink import Sink
from engine.store.base import NewJob, Store
from engine.store.redis import RedisStore
from engine.store.sqlite import SQLiteStore

DESTINATIONS = ("d0", "d1", "d2", "d3")
WORKERS = 8


def new_jobs(count: int) -> list[NewJob]:
    run = uuid.uuid4().hex[:8]
    return [NewJob(key=f"{run}-{i}:drain:0", destination=DESTINATIONS[i % len(DESTINATIONS)], action="http",
                   message={"path": "/sink", "json": {"n": i}}, rule="drain", jti=f"{run}-{i}",
                   received_at=time.time())
            for i in range(count)]


def send_direct(url: str, first: int, count: int, threads: int) -> None:
    """The baseline sender (run in its own process, like an idhooks process): POST `count` jobs' worth of
    requests from `threads` threads, one keep-alive session each."""
    local = threading.local()

    def send(i: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        local.session.post(f"{url}/sink", json={"n": i}, headers={"Idempotency-Key": f"base-{i}"}, timeout=10)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(send, range(first, first + count)))


def baseline(sink: Sink, count: int, processes: int) -> float:
    """The same number of POSTs sent straight to the sink by `processes` processes of WORKERS threads: sends/s."""
    share = count // processes
    started = time.perf_counter()
    senders = [subprocess.Popen([sys.executable, __file__, "--send-direct", sink.url, str(i * share), str(share)])
               for i in range(processes)]
    for sender in senders:
        sender.wait()
    return share * processes / (time.perf_counter() - started)


def drain(sink: Sink, folder: Path, count: int, processes: int, redis: str | None) -> tuple[float, int, int]:
    """Start the processes, queue `count` jobs, wait for the sink to have them all: (jobs/s, arrived,
    repeated sends)."""
    group = f"bench-drain-{uuid.uuid4().hex[:8]}"
    extra = "destinations:\n" + "".join(f'  {d}: {{type: http, base_url: "{sink.url}"}}\n' for d in DESTINATIONS)
    extra += f"delivery: {{workers: {WORKERS}, per_destination_concurrency: {WORKERS}}}\n"
    servers = []
    store: Store | None = None
    sink.reset()
    try:
        for index in range(processes):
            workdir = folder / f"{'redis' if redis else 'sqlite'}-{processes}-{index}"
            workdir.mkdir()
            port = free_port()
            config = write_bench_config(workdir, port, 4, "bench-secret", redis, extra=extra)
            if redis:
                config.write_text(config.read_text().replace(
                    f'store: {{url: "{redis}"}}', f'store: {{url: "{redis}", group: "{group}", spool_dir: spool}}'))
            servers.append(Proc(["-m", "engine", "serve", "--config", str(config)], port, cwd=workdir))
            if store is None:
                store = (RedisStore(redis, group=group, spool_dir=workdir / "bench-spool") if redis
                         else SQLiteStore(workdir / "var" / "idhooks.db"))
        jobs = new_jobs(count)
        started = time.perf_counter()
        store.enqueue_jobs(jobs, time.time())
        sink.wait_for(count, 120)
        ended = max(sink.first.values(), default=started)
    finally:
        for server in servers:
            server.stop()
        if store is not None:
            if isinstance(store, RedisStore):
                keys = list(store.redis.scan_iter(match=store.prefix + "*", count=1000))
                if keys:
                    store.redis.delete(*keys)
            store.close()
    arrived = sum(1 for job in jobs if sink.calls[job.key])
    repeated = sum(sink.calls[job.key] for job in jobs) - arrived
    return arrived / (ended - started), arrived, repeated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15", help="a Redis to use (a unique group)")
    parser.add_argument("--send-direct", nargs=3, metavar=("URL", "FIRST", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send_direct:
        url, first, count = args.send_direct
        send_direct(url, int(first), int(count), WORKERS)
        return 0
    sink = Sink()
    ok = True
    print(f"queue drain: {args.jobs} queued http jobs over {len(DESTINATIONS)} destinations, {WORKERS} delivery "
          "workers per process, loopback sink")
    try:
        with tempfile.TemporaryDirectory(prefix="idhooks-drain-") as tmp:
            for label, processes, redis in (("SQLite, 1 process", 1, None), ("Redis, 1 process", 1, args.redis),
                                            ("Redis, 2 processes", 2, args.redis)):
                base = baseline(sink, args.jobs, processes)
                rate, arrived, repeated = drain(sink, Path(tmp), args.jobs, processes, redis)
                ok = ok and arrived == args.jobs and repeated == 0
                print(f"  {label:<19} {rate:7.0f} jobs/s   baseline (direct POSTs, {processes}x{WORKERS} threads) "
                      f"{base:6.0f}/s   ratio {rate / base:.2f}   arrived {arrived}/{args.jobs}, repeated {repeated}")
    finally:
        sink.close()
    print("every job delivered exactly once" if ok else "PROBLEM: a job was lost or sent twice")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
