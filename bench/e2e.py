"""End-to-end delivery benchmark (issues 4 and 6): signed events at a fixed rate through `idhooks serve` to a
local HTTP sink via a matching rule with an `http` action. Prints p50/p95/p99 of the time from the event's
POST to the sink receiving the call, delivered/sent and repeated sends. Not a test: it prints figures.

Targets on this machine: every event delivered; p50 <= 20 ms, p99 <= 100 ms.

    python bench/e2e.py [--rate 200] [--seconds 20]                  one process, SQLite store
    python bench/e2e.py --redis redis://127.0.0.1:6379/15 --processes 2
                                    two processes of one deployment (a unique group) sharing the Redis
                                    delivery queue; events are sent to them in turn

    python bench/e2e.py --saturate [--events 3000] [--processes N]
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

from bench.procs import Proc, free_port, write_bench_config
from bench.sink import Sink
from engine import catalog
from engine.verify.signature import sign
from engine.store.redis import RedisStore

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
    local = threading.local()
    events = [make_event() for _ in range(int(rate * seconds))]

    def post(url: str, jti: str, body: bytes) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()  # one keep-alive connection per sender thread
        session = local.session
        headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(body, SECRET)}
        started = time.perf_counter()
        status = session.post(url, data=body, headers=headers, timeout=10).status_code
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


def start_servers(folder: Path, sink: Sink, processes: int, redis: str | None, group: str) -> list[Proc]:
    """`processes` servers, each in its own working folder; with `redis`, one deployment `group`."""
    servers = []
    extra = f'destinations:\n  sink: {{type: http, base_url: "{sink.url}"}}\n'
    for index in range(processes):
        workdir = folder / f"p{index}"
        workdir.mkdir()
        port = free_port()
        config = write_bench_config(workdir, port, 8, SECRET, redis, rules=RULE, extra=extra)
        if redis:
            config.write_text(config.read_text().replace(
                f'store: {{url: "{redis}"}}', f'store: {{url: "{redis}", group: "{group}", spool_dir: spool}}'))
        servers.append(Proc(["-m", "engine", "serve", "--config", str(config)], port, cwd=workdir))
    return servers


def forget_group(redis: str, group: str, folder: Path) -> None:
    """Delete the benchmark deployment's keys from the shared Redis."""
    store = RedisStore(redis, group=group, spool_dir=folder / "cleanup")
    try:
        keys = list(store.redis.scan_iter(match=store.prefix + "*", count=1000))
        if keys:
            store.redis.delete(*keys)
    finally:
        store.close()


def main() -> int:
    if "--saturate" in sys.argv[1:]:  # the saturating mode lives in bench/saturate.py
        from bench.saturate import main as saturate

        return saturate(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="events per second (default 200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to send (default 20)")
    parser.add_argument("--redis", help="a Redis URL: the processes share it (default: one process on SQLite)")
    parser.add_argument("--processes", type=int, default=1, help="idhooks serve processes (more than 1 needs "
                                                                 "--redis)")
    args = parser.parse_args()
    if args.processes > 1 and not args.redis:
        parser.error("--processes above 1 needs --redis: several processes share one Redis store")
    sink = Sink()
    group = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="idhooks-e2e-") as folder:
        servers: list[Proc] = []
        try:
            servers = start_servers(Path(folder), sink, args.processes, args.redis, group)
            urls = [f"http://127.0.0.1:{server.port}/webhooks/asgardeo" for server in servers]
            sent, statuses = send_at_rate(urls, args.rate, args.seconds)
            sink.wait_for(len(sent), 30)
            serve_cpu = sum(server.cpu() for server in servers)
        finally:
            for server in servers:
                server.stop()
            sink.close()
            if args.redis:
                forget_group(args.redis, group, Path(folder))
    arrived = {key.split(":")[0]: at for key, at in sink.first.items()}
    latencies = [arrived[jti] - at for jti, at in sent.items() if jti in arrived]
    where = (f"{args.processes} process{'es' if args.processes > 1 else ''} on Redis" if args.redis
             else "1 process on SQLite")
    print(f"e2e ({where}): {args.rate:g} events/s for {args.seconds:g} s; intake statuses "
          f"{dict(sorted(statuses.items()))}")
    print(f"delivered {len(latencies)}/{len(sent)}, repeated sends {sum(sink.calls.values()) - len(sink.calls)}; POST -> sink "
          f"latency p50 {percentile(latencies, 50) * 1000:.1f} ms  p95 {percentile(latencies, 95) * 1000:.1f} ms  "
          f"p99 {percentile(latencies, 99) * 1000:.1f} ms  (targets: all delivered, p50 <= 20 ms, p99 <= 100 ms)")
    print(f"(idhooks serve used {serve_cpu:.1f} s of CPU, {serve_cpu / max(len(sent), 1) * 1000:.2f} ms per event; "
          f"1-minute load average of the machine: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0 if len(latencies) == len(sent) else 1

if __name__ == "__main__":
    sys.exit(main())
