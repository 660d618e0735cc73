"""End-to-end delivery benchmark (issues 4 and 6): signed events at a fixed rate through `idhooks serve` to a
local HTTP sink via a matching rule with an `http` action. Prints p50/p95/p99 of the time from the event's
POST to the sink receiving the call, delivered/sent and repeated sends. Not a test: it prints figures.

Targets on this machine: every event delivered; p50 <= 20 ms, p99 <= 100 ms.

    python bench/e2e.py [--rate 200] [--seconds 20]                  one process, SQLite store
    python bench/e2e.py --store redis://127.0.0.1:6379/15 --processes 2
    python bench/e2e.py --store postgresql://postgres@127.0.0.1:5432/postgres --processes 2
                                    two processes of one deployment (a unique group) sharing the store's
                                    delivery queue; events are sent to them in turn

    python bench/e2e.py --saturate [--events 3000] [--passes 3] [--processes N|auto]
                                    the most events/s delivered, CPU per delivered event, and Node-RED on
                                    the same flow in the same run (bench/saturate.py)

The sink (bench/sink.py) runs in this process and correlates calls by their Idempotency-Key
(`<jti>:<rule>:<index>`), so send and receive times come from one clock.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import Proc, forget_deployment, free_port, open_deployment, shared_store, write_bench_config
from bench.sink import Sink
from engine import catalog
from engine.verify.signature import sign

SECRET = "bench-secret-" + uuid.uuid4().hex
RULE = """
rules:
  - id: e2e
    event: login.loginFailed
    actions:
      - http: {to: sink, method: POST, path: /sink, json: {user: "{{ username }}", reason: "e2e"}}
"""


def make_event() -> tuple[str, bytes]:
    event = catalog.entries()["login.loginFailed"].sample()
    event["jti"] = str(uuid.uuid4())
    event["iat"] = int(time.time() * 1000)
    next(iter(event["events"].values()))["initiatorType"] = "USER"
    return event["jti"], json.dumps(event, separators=(", ", ": ")).encode()


def send_at_rate(urls: list[str], rate: float, seconds: float) -> tuple[dict[str, float], dict[int, int]]:
    """POST `rate` events per second for `seconds`, to the URLs in turn; returns jti -> send time and the
    status counts."""
    sent: dict[str, float] = {}
    statuses: dict[int, int] = {}
    counting = threading.Lock()  # 16 sender threads count; an unlocked += lost counts ("MISMATCH" that wasn't)
    local = threading.local()
    events = [make_event() for _ in range(int(rate * seconds))]

    def post(url: str, jti: str, body: bytes) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()  # one keep-alive connection per sender thread
        session = local.session
        headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(body, SECRET)}
        started = time.perf_counter()
        status = session.post(url, data=body, headers=headers, timeout=10).status_code
        with counting:
            sent[jti] = started
            statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for index, (jti, body) in enumerate(events):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(post, urls[index % len(urls)], jti, body)
    return sent, statuses


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def start_servers(folder: Path, sink: Sink, processes: int, store: str | None, group: str) -> list[Proc]:
    """`processes` servers, each in its own working folder; with a shared `store` URL, one deployment `group`."""
    servers = []
    extra = f'destinations:\n  sink: {{type: http, base_url: "{sink.url}"}}\n'
    for index in range(processes):
        workdir = folder / f"p{index}"
        workdir.mkdir()
        port = free_port()
        config = write_bench_config(workdir, port, 8, SECRET, store, rules=RULE, extra=extra)
        if store and not store.startswith("sqlite:///"):
            shared_store(config, store, group)
        servers.append(Proc(["-m", "engine", "serve", "--config", str(config)], port, cwd=workdir))
    return servers


def sqlite_file(url: str | None, workdir: Path) -> str:
    """The absolute SQLite URL a process in `workdir` used (relative paths resolve against its config)."""
    path = (url or "sqlite:///var/idhooks.db")[len("sqlite:///"):]
    return f"sqlite:///{path if path.startswith('/') else workdir / path}"


def main() -> int:
    if "--saturate" in sys.argv[1:]:  # the saturating mode lives in bench/saturate.py
        from bench.saturate import main as saturate

        return saturate(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="events per second (default 200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to send (default 20)")
    parser.add_argument("--store", help="a store URL: redis://..., postgresql://... (the processes share it, as "
                                        "a unique group) or sqlite:///PATH (default: a SQLite file per process)")
    parser.add_argument("--processes", type=int, default=1, help="idhooks serve processes (more than 1 needs "
                                                                 "a shared --store)")
    args = parser.parse_args()
    shared = bool(args.store) and not args.store.startswith("sqlite:///")
    if args.processes > 1 and not shared:
        parser.error("--processes above 1 needs a shared --store (Redis or PostgreSQL)")
    sink = Sink()
    group = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="idhooks-e2e-") as folder:
        servers: list[Proc] = []
        try:
            servers = start_servers(Path(folder), sink, args.processes, args.store, group)
            urls = [f"http://127.0.0.1:{server.port}/webhooks/asgardeo" for server in servers]
            sent, statuses = send_at_rate(urls, args.rate, args.seconds)
            sink.wait_for(len(sent), 30)
            serve_cpu = sum(server.cpu() for server in servers)
        finally:
            for server in servers:
                server.stop()
            sink.close()
        store = open_deployment(args.store if shared else sqlite_file(args.store, Path(folder) / "p0"), group,
                                Path(folder))
        try:
            stored = sum(store.stats().events.values())
        finally:
            store.close()
            if shared:
                forget_deployment(args.store, group, Path(folder))
    arrived = {key.split(":")[0]: at for key, at in sink.first.items()}
    latencies = [arrived[jti] - at for jti, at in sent.items() if jti in arrived]
    backend = "SQLite" if not shared else ("PostgreSQL" if args.store.startswith("postgres") else "Redis")
    where = f"{args.processes} process{'es' if args.processes > 1 else ''} on {backend}"
    print(f"e2e ({where}): {args.rate:g} events/s for {args.seconds:g} s; intake statuses "
          f"{dict(sorted(statuses.items()))}")
    print(f"delivered {len(latencies)}/{len(sent)}, repeated sends {sum(sink.calls.values()) - len(sink.calls)}; POST -> sink "
          f"latency p50 {percentile(latencies, 50) * 1000:.1f} ms  p95 {percentile(latencies, 95) * 1000:.1f} ms  "
          f"p99 {percentile(latencies, 99) * 1000:.1f} ms  (targets: all delivered, p50 <= 20 ms, p99 <= 100 ms)")
    accepted = statuses.get(202, 0)
    print(f"stored {stored} events for {accepted} accepted: "
          + ("every accepted event stored once" if stored == accepted else "MISMATCH"))
    print(f"(idhooks serve used {serve_cpu:.1f} s of CPU, {serve_cpu / max(len(sent), 1) * 1000:.2f} ms per event; "
          f"1-minute load average of the machine: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0 if len(latencies) == len(sent) and stored == accepted else 1

if __name__ == "__main__":
    sys.exit(main())
