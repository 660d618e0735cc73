"""Ingest benchmark: signed ~1.5 KB events with unique jti at concurrency 16 against
(a) `idhooks serve` with the SQLite store and (b) the bare Falcon+waitress baseline that only verifies the
HMAC and parses JSON (bench/baseline_app.py), each at its best thread count (`server.threads`; under granian,
the default `server.http_server`, event POSTs use none of them), in the same run.
Each system runs `--passes` times (default 3), interleaved with the others so that a change in the machine's
load hits all of them; the figures are the medians. Prints throughput, p50/p99, server CPU per request and the
ratio a/b (target >= 0.8), and checks that every accepted event is stored, in every pass.

The load comes from wrk (bench/wrk.py: 16 keep-alive connections, passes of `--seconds`, distinct events), as in
the issue's measurements; `--loadgen python` (or no wrk) sends `--requests` events with bench/loadgen.py
instead, which takes most of a core of a 2-core machine from the servers.

Then, in the same run: idhooks with `--processes` (default `auto`, one per core) at its best thread count, and
adnanh/webhook (Debian's `webhook` package, installed if missing; skipped with a message otherwise) with the hook
of the comparison: HMAC of the raw body, a regex on the event URI, exec /bin/true, 202. Target: idhooks with
`--processes auto` >= adnanh/webhook.

    python bench/ingest.py [--seconds 10] [--passes 3] [--requests N] [--loadgen wrk|python]
                           [--threads 4,8,16] [--processes auto] [--no-webhook]
                           [--http-server granian|waitress]
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
from bench.wrk import ensure_wrk, run_wrk
from bench.procs import Proc, free_port, per_thread_us, threads_line, write_bench_config
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


WARMUP = 500


class Load:
    """How each system is loaded: wrk for `seconds` over prepared distinct events (`bodies`), or, without
    wrk, every one of `bodies` sent once by bench/loadgen.py."""

    def __init__(self, wrk: str | None, bodies: list[bytes], seconds: float, concurrency: int) -> None:
        self.wrk, self.bodies, self.seconds, self.concurrency = wrk, bodies, seconds, concurrency

    def describe(self) -> str:
        if self.wrk:
            return (f"wrk, {self.concurrency} keep-alive connections, passes of {self.seconds:g} s over "
                    f"{len(self.bodies)} distinct signed ~1.5 KB events")
        return f"bench/loadgen.py (Python), {len(self.bodies)} signed ~1.5 KB events, concurrency {self.concurrency}"

    def measure(self, server: Proc, path: str = "/webhooks/asgardeo") -> LoadResult:
        """Warm up, then load the server; the result carries the server's CPU seconds per request."""
        port = server.port
        run_load("127.0.0.1", port, requests_for(port, make_bodies(WARMUP), path), self.concurrency)
        prepared = requests_for(port, self.bodies, path)
        cpu, threads = server.cpu(), server.thread_cpu()
        if self.wrk:
            result = run_wrk(self.wrk, "127.0.0.1", port, prepared, self.concurrency, self.seconds)
        else:
            result = run_load("127.0.0.1", port, prepared, self.concurrency)
        result.cpu_per_request = (server.cpu() - cpu) / max(1, result.requests)
        result.threads = per_thread_us(threads, server.thread_cpu(), result.requests)
        return result


def median_run(runs: list[LoadResult]) -> LoadResult:
    """The pass with the median throughput (the lower middle one of an even number)."""
    return sorted(runs, key=lambda run: run.throughput)[(len(runs) - 1) // 2]


def spread(runs: list[LoadResult]) -> str:
    return "passes " + "/".join(f"{run.throughput:.0f}" for run in runs) if len(runs) > 1 else ""


def stored_all(result: LoadResult, stored: int, concurrency: int) -> bool:
    """Every acknowledged event is stored: the warm-up and each 202, and at most the requests still in flight
    when wrk stopped counting (stored, unanswered) besides."""
    accepted = result.statuses.get(202, 0) + WARMUP
    return result.repeated == 0 and accepted <= stored <= accepted + concurrency


def cpu_us(result: LoadResult) -> str:
    return f"CPU {result.cpu_per_request * 1e6:5.0f} us/req"


def bench_baseline(threads: int, load: Load) -> LoadResult:
    port = free_port()
    proc = Proc(["bench/baseline_app.py", str(port), str(threads), SECRET], port)
    try:
        return load.measure(proc)
    finally:
        proc.stop()


def bench_webhook(program: str, load: Load) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_webhook(program, Path(tmp), SECRET)
        try:
            return load.measure(proc, "/hooks/asgardeo")
        finally:
            proc.stop()


def bench_idhooks(threads: int, load: Load, processes: str = "1",
                  http_server: str = "granian") -> tuple[LoadResult, int]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = write_bench_config(Path(tmp), port, threads, SECRET)
        config.write_text(config.read_text().replace(f"threads: {threads}}}",
                                                     f"threads: {threads}, http_server: {http_server}}}", 1))
        proc = Proc(["-m", "engine", "serve", "--config", str(config), "--processes", processes], port,
                    cwd=Path(tmp))
        try:
            result = load.measure(proc)
        finally:
            proc.stop()
        with sqlite3.connect(Path(tmp) / "var" / "idhooks.db") as conn:
            stored = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    return result, stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk pass (default 10)")
    parser.add_argument("--requests", type=int, default=None,
                        help="distinct events prepared (default 100000 with wrk, 6000 with --loadgen python)")
    parser.add_argument("--loadgen", choices=("wrk", "python"), default="wrk")
    parser.add_argument("--passes", type=int, default=3, help="interleaved passes per system (default 3)")
    parser.add_argument("--threads", default="4,8,16")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--processes", default="auto", help="idhooks --processes values to add, comma separated "
                                                            "(default auto; 'none' for none)")
    parser.add_argument("--no-webhook", action="store_true", help="skip the adnanh/webhook peer")
    parser.add_argument("--http-server", choices=("granian", "waitress"), default="granian",
                        help="idhooks's server.http_server (default granian, the async intake)")
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]
    wrk = ensure_wrk() if args.loadgen == "wrk" else None
    count = args.requests or (100000 if wrk else 6000)
    load = Load(wrk, make_bodies(count), args.seconds, args.concurrency)
    print(f"ingest: {load.describe()}; threads {thread_counts}; idhooks http_server {args.http_server}; "
          f"{args.passes} interleaved passes each, medians")
    durable = True

    def idhooks_pass(threads: int, processes: str = "1") -> LoadResult:
        nonlocal durable
        result, stored = bench_idhooks(threads, load, processes, args.http_server)
        if not stored_all(result, stored, args.concurrency):
            durable = False
            print(f"    MISMATCH: {result.statuses.get(202, 0)} accepted (+{WARMUP} warm-up), {stored} stored")
        return result

    best_a: tuple[LoadResult, int] | None = None
    best_b: tuple[LoadResult, int] | None = None
    for threads in thread_counts:
        runs_b, runs_a = [], []
        for _ in range(args.passes):  # interleaved, so that a change in the machine's load hits both
            runs_b.append(bench_baseline(threads, load))
            runs_a.append(idhooks_pass(threads))
        b, a = median_run(runs_b), median_run(runs_a)
        print(f"  baseline (verify+parse) threads={threads:<3} {b.summary()}  {cpu_us(b)}  {spread(runs_b)}")
        print(f"  idhooks serve (SQLite)  threads={threads:<3} {a.summary()}  {cpu_us(a)}  {spread(runs_a)}")
        print(threads_line(a.threads))
        if best_b is None or b.throughput > best_b[0].throughput:
            best_b = (b, threads)
        if best_a is None or a.throughput > best_a[0].throughput:
            best_a = (a, threads)
    a, a_threads = best_a
    b, b_threads = best_b
    print(f"best idhooks:  {a.throughput:.0f} req/s (threads={a_threads}), p50 {a.percentile(50) * 1000:.2f} ms, "
          f"p99 {a.percentile(99) * 1000:.2f} ms")
    print(f"best baseline: {b.throughput:.0f} req/s (threads={b_threads}), p50 {b.percentile(50) * 1000:.2f} ms, "
          f"p99 {b.percentile(99) * 1000:.2f} ms")
    print(f"ratio idhooks/baseline: {a.throughput / b.throughput:.2f} (target >= 0.8)")
    print(f"durability: {'every accepted event stored, in every pass' if durable else 'MISMATCH (see above)'}")
    multi = [] if args.processes == "none" else args.processes.split(",")
    program = None if args.no_webhook or not multi else ensure_webhook()
    for processes in multi:
        runs_m, runs_w = [], []
        for _ in range(args.passes):
            runs_m.append(idhooks_pass(a_threads, processes))
            if program:
                runs_w.append(bench_webhook(program, load))
        m = median_run(runs_m)
        print(f"  idhooks --processes {processes:<4} threads={a_threads:<3} {m.summary()}  {cpu_us(m)}  "
              f"{spread(runs_m)}")
        print(threads_line(m.threads))
        print(f"    ratio to one process: {m.throughput / a.throughput:.2f}; to the baseline: "
              f"{m.throughput / b.throughput:.2f}")
        if runs_w:
            w = median_run(runs_w)
            print(f"  adnanh/webhook (HMAC + regex + exec) {w.summary()}  {cpu_us(w)}  {spread(runs_w)}")
            print(f"    idhooks --processes {processes} / adnanh/webhook: {m.throughput / w.throughput:.2f} "
                  f"(target >= 1)")
    return 0 if durable else 1


if __name__ == "__main__":
    sys.exit(main())
