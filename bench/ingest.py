"""Ingest benchmark: signed ~1.5 KB events with unique jti at concurrency 16 against
(a) `idhooks serve` with the SQLite store and (b) the bare Falcon+waitress baseline that only verifies the
HMAC and parses JSON (bench/baseline_app.py), each at its best waitress thread count, in the same run.
Prints throughput, p50/p99, server CPU per request and the ratio a/b (target >= 0.8), and checks that every
accepted event is stored.

Then, in the same run: idhooks with `--processes` (default `auto`, one per core) at its best thread count, and
adnanh/webhook (Debian's `webhook` package, installed if missing; skipped with a message otherwise) with the hook
of the comparison: HMAC of the raw body, a regex on the event URI, exec /bin/true, 202. Target: idhooks with
`--processes auto` >= adnanh/webhook.

    python bench/ingest.py [--requests 6000] [--threads 4,8,16] [--processes auto] [--no-webhook]
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
from bench.peers import ensure_webhook, start_webhook
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


def requests_for(port: int, bodies: list[bytes], path: str = "/webhooks/asgardeo") -> list[bytes]:
    return [build_request("127.0.0.1", port, path, body,
                          {"Content-Type": "application/json", "X-Hub-Signature": sign(body, SECRET)})
            for body in bodies]


def measure(server: Proc, count: int, concurrency: int, path: str = "/webhooks/asgardeo") -> LoadResult:
    """Warm up, then send `count` requests; the result carries the server's CPU seconds per request."""
    port = server.port
    run_load("127.0.0.1", port, requests_for(port, make_bodies(min(500, count)), path), concurrency)
    prepared = requests_for(port, make_bodies(count), path)
    cpu = server.cpu()
    result = run_load("127.0.0.1", port, prepared, concurrency)
    result.cpu_per_request = (server.cpu() - cpu) / count
    return result


def cpu_us(result: LoadResult) -> str:
    return f"CPU {result.cpu_per_request * 1e6:5.0f} us/req"


def bench_baseline(threads: int, count: int, concurrency: int) -> LoadResult:
    port = free_port()
    proc = Proc(["bench/baseline_app.py", str(port), str(threads), SECRET], port)
    try:
        return measure(proc, count, concurrency)
    finally:
        proc.stop()


def bench_webhook(program: str, count: int, concurrency: int) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_webhook(program, Path(tmp), SECRET)
        try:
            return measure(proc, count, concurrency, "/hooks/asgardeo")
        finally:
            proc.stop()


def bench_idhooks(threads: int, count: int, concurrency: int, processes: str = "1") -> tuple[LoadResult, int]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = write_bench_config(Path(tmp), port, threads, SECRET)
        proc = Proc(["-m", "engine", "serve", "--config", str(config), "--processes", processes], port,
                    cwd=Path(tmp))
        try:
            result = measure(proc, count, concurrency)
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
    parser.add_argument("--processes", default="auto", help="idhooks --processes values to add, comma separated "
                                                            "(default auto; 'none' for none)")
    parser.add_argument("--no-webhook", action="store_true", help="skip the adnanh/webhook peer")
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]
    print(f"ingest: {args.requests} signed ~1.5 KB events, concurrency {args.concurrency}, "
          f"waitress threads {thread_counts}")
    best_a: tuple[LoadResult, int, int] | None = None
    best_b: tuple[LoadResult, int] | None = None
    for threads in thread_counts:
        b = bench_baseline(threads, args.requests, args.concurrency)
        print(f"  baseline (verify+parse) threads={threads:<3} {b.summary()}  {cpu_us(b)}")
        a, stored = bench_idhooks(threads, args.requests, args.concurrency)
        print(f"  idhooks serve (SQLite)  threads={threads:<3} {a.summary()}  {cpu_us(a)}  stored {stored}")
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
    multi = [] if args.processes == "none" else args.processes.split(",")
    for processes in multi:
        m, m_stored = bench_idhooks(a_threads, args.requests, args.concurrency, processes)
        m_durable = m_stored == m.statuses.get(202, 0) + warmup
        durable = durable and m_durable
        print(f"  idhooks --processes {processes:<4} threads={a_threads:<3} {m.summary()}  {cpu_us(m)}  stored {m_stored}"
              f"{'' if m_durable else '  MISMATCH'}")
        print(f"    ratio to one process: {m.throughput / a.throughput:.2f}; to the baseline: "
              f"{m.throughput / b.throughput:.2f}")
        if not args.no_webhook and (program := ensure_webhook()):
            w = bench_webhook(program, args.requests, args.concurrency)
            print(f"  adnanh/webhook (HMAC + regex + exec) {w.summary()}  {cpu_us(w)}")
            print(f"    idhooks --processes {processes} / adnanh/webhook: {m.throughput / w.throughput:.2f} "
                  f"(target >= 1)")
    return 0 if durable else 1


if __name__ == "__main__":
    sys.exit(main())
