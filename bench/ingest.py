"""Ingest benchmark (issue 2): signed ~1.5 KB events with unique jti at concurrency 16 against
(a) `idhooks serve` with the SQLite store and (b) the bare Falcon+waitress baseline that only verifies the
HMAC and parses JSON (bench/baseline_app.py), each at its best waitress thread count, in the same run.
Prints throughput, p50/p99 and the ratio a/b, and checks that every accepted event is stored.

    python bench/ingest.py [--requests 6000] [--threads 4,8,16]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import LoadResult, build_request, run_load
from bench.procs import Proc, free_port, write_bench_config
from engine import catalog
from engine.verify.signature import sign

SECRET = "bench-secret-" + uuid.uuid4().hex


def make_bodies(count: int) -> list[bytes]:
    """Hub-serialised loginFailed events padded to ~1.5 KB, each with its own jti."""
    template = catalog.entries()["login.loginFailed"].sample()
    body = next(iter(template["events"].values()))
    body["user"]["claims"].append({"uri": "http://wso2.org/claims/emailaddress", "value": "jane.doe@example.com"})
    bodies = []
    for _ in range(count):
        template["jti"] = str(uuid.uuid4())
        template["iat"] = int(time.time() * 1000)
        raw = json.dumps(template, separators=(", ", ": "))
        pad = max(0, 1500 - len(raw) - 20)
        template["rci"] = "r" * pad
        bodies.append(json.dumps(template, separators=(", ", ": ")).encode())
    return bodies


def requests_for(port: int, bodies: list[bytes]) -> list[bytes]:
    return [build_request("127.0.0.1", port, "/webhooks/asgardeo", body,
                          {"Content-Type": "application/json", "X-Hub-Signature": sign(body, SECRET)})
            for body in bodies]


def measure(port: int, count: int, concurrency: int) -> LoadResult:
    run_load("127.0.0.1", port, requests_for(port, make_bodies(min(500, count))), concurrency)  # warm-up
    return run_load("127.0.0.1", port, requests_for(port, make_bodies(count)), concurrency)


def bench_baseline(threads: int, count: int, concurrency: int) -> LoadResult:
    port = free_port()
    proc = Proc(["bench/baseline_app.py", str(port), str(threads), SECRET], port)
    try:
        return measure(port, count, concurrency)
    finally:
        proc.stop()


def bench_idhooks(threads: int, count: int, concurrency: int) -> tuple[LoadResult, int]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = write_bench_config(Path(tmp), port, threads, SECRET)
        proc = Proc(["-m", "engine", "serve", "--config", str(config)], port, cwd=Path(tmp))
        try:
            result = measure(port, count, concurrency)
        finally:
            proc.stop()
        with sqlite3.connect(Path(tmp) / "var" / "idhooks.db") as conn:
            stored = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    return result, stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--threads", default="4,8,16")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]
    print(f"ingest: {args.requests} signed ~1.5 KB events, concurrency {args.concurrency}, "
          f"waitress threads {thread_counts}")
    best_a: tuple[LoadResult, int, int] | None = None
    best_b: tuple[LoadResult, int] | None = None
    for threads in thread_counts:
        b = bench_baseline(threads, args.requests, args.concurrency)
        print(f"  baseline (verify+parse) threads={threads:<3} {b.summary()}")
        a, stored = bench_idhooks(threads, args.requests, args.concurrency)
        print(f"  idhooks serve (SQLite)  threads={threads:<3} {a.summary()}  stored {stored}")
        if best_b is None or b.throughput > best_b[0].throughput:
            best_b = (b, threads)
        if best_a is None or a.throughput > best_a[0].throughput:
            best_a = (a, threads, stored)
    a, a_threads, stored = best_a
    b, b_threads = best_b
    accepted = a.statuses.get(202, 0)
    warmup = min(500, args.requests)
    print(f"best idhooks:  {a.throughput:.0f} req/s (threads={a_threads}), p50 {a.percentile(50) * 1000:.2f} ms, "
          f"p99 {a.percentile(99) * 1000:.2f} ms")
    print(f"best baseline: {b.throughput:.0f} req/s (threads={b_threads}), p50 {b.percentile(50) * 1000:.2f} ms, "
          f"p99 {b.percentile(99) * 1000:.2f} ms")
    print(f"ratio idhooks/baseline: {a.throughput / b.throughput:.2f} (target >= 0.8)")
    durable = stored == accepted + warmup
    print(f"durability: {accepted} accepted in the measured run (+{warmup} warm-up), {stored} stored: "
          f"{'every accepted event stored' if durable else 'MISMATCH'}")
    return 0 if durable else 1


if __name__ == "__main__":
    sys.exit(main())
