"""Saturating end-to-end benchmark (`bench/e2e.py --saturate`): the most events per second that are
acknowledged, stored, matched by one rule and delivered by its `http` action to a loopback sink, and the
server's CPU per delivered event. In the same run:

- idhooks with no rules (ingest only): its CPU per ingested event is the yardstick; the target is CPU per
  delivered event <= 1.5x CPU per ingested event;
- Node-RED on the same flow (HTTP in, HMAC function, switch on the event URI, HTTP request to the same sink,
  202), installed from npm into a temporary folder (skipped with a message when npm cannot fetch it); the target
  is idhooks throughput >= 3x Node-RED's.

Every run checks that each event reached the sink exactly once (exit status 1 otherwise).

    python bench/e2e.py --saturate [--events 3000] [--processes 1] [--no-node-red]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.ingest import SECRET, make_bodies, requests_for
from bench.loadgen import run_load
from bench.peers import ensure_node_red, start_node_red
from bench.procs import Proc, free_port, write_bench_config
from bench.sink import Sink
from bench.e2e import RULE  # the same rule and action as the fixed-rate benchmark
CONCURRENCY = 16


@dataclass
class Run:
    name: str
    events: int
    seconds: float  # first POST to the last delivery (ingest only: to the last 202)
    cpu: float  # server CPU seconds over the run
    delivered: int
    repeated: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_event_us(self) -> float:
        return self.cpu / self.events * 1e6

    def line(self) -> str:
        return (f"  {self.name:<34} {self.rate:7.0f} events/s  CPU {self.cpu_per_event_us:6.0f} us/event  "
                f"delivered {self.delivered}/{self.events}  repeated {self.repeated}")


def drive(server: Proc, path: str, sink: Sink | None, count: int) -> tuple[float, float, int, int]:
    """POST `count` distinct signed events at full speed; wait for the sink to have them all."""
    run_load("127.0.0.1", server.port, requests_for(server.port, make_bodies(200), path), CONCURRENCY)
    if sink is not None:
        sink.wait_for(200, 60)
        sink.reset()
    requests = requests_for(server.port, make_bodies(count), path)
    cpu_before = server.cpu()
    started = time.perf_counter()
    result = run_load("127.0.0.1", server.port, requests, CONCURRENCY)
    if sink is not None:
        sink.wait_for(count, 120)
        finished = max(sink.first.values(), default=time.perf_counter())
    else:
        finished = started + result.seconds
    cpu = server.cpu() - cpu_before
    if result.statuses.get(202, 0) != count:
        print(f"    intake statuses {dict(sorted(result.statuses.items()))}")
    delivered = len(sink.first) if sink is not None else result.statuses.get(202, 0)
    repeated = sum(sink.calls.values()) - len(sink.calls) if sink is not None else 0
    return finished - started, cpu, delivered, repeated


def idhooks_run(folder: Path, name: str, sink: Sink | None, count: int, processes: int) -> Run:
    workdir = Path(tempfile.mkdtemp(dir=folder))
    port = free_port()
    extra = f'destinations:\n  sink: {{type: http, base_url: "{sink.url}"}}\n' if sink else ""
    config = write_bench_config(workdir, port, 8, SECRET, rules=RULE if sink else "", extra=extra)
    server = Proc(["-m", "engine", "serve", "--config", str(config), "--processes", str(processes)], port,
                  cwd=workdir)
    try:
        seconds, cpu, delivered, repeated = drive(server, "/webhooks/asgardeo", sink, count)
    finally:
        server.stop()
    return Run(name, count, seconds, cpu, delivered, repeated)


def node_red_run(folder: Path, sink: Sink, count: int) -> Run | None:
    red = ensure_node_red(folder / "node-red")
    if red is None:
        return None
    server = start_node_red(red, folder, SECRET, sink.url + "/sink")
    try:
        seconds, cpu, delivered, repeated = drive(server, "/webhooks/asgardeo", sink, count)
    finally:
        server.stop()
    return Run("Node-RED (same flow)", count, seconds, cpu, delivered, repeated)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saturate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=1, help="idhooks serve --processes (default 1)")
    parser.add_argument("--no-node-red", action="store_true", help="skip the Node-RED peer")
    args = parser.parse_args(argv)
    print(f"e2e saturating: {args.events} signed events at concurrency {CONCURRENCY}, SQLite store, "
          f"{args.processes} idhooks process(es)")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="idhooks-saturate-") as tmp:
        folder = Path(tmp)
        ingest = idhooks_run(folder, "idhooks ingest only (no rules)", None, args.events, args.processes)
        print(ingest.line())
        sink = Sink()
        try:
            full = idhooks_run(folder, "idhooks rule + http action", sink, args.events, args.processes)
            print(full.line())
            runs.append(full)
            peer = None
            if not args.no_node_red:
                sink.reset()
                peer = node_red_run(folder, sink, args.events)
                if peer is not None:
                    print(peer.line())
                    runs.append(peer)
        finally:
            sink.close()
    print(f"CPU per delivered event / CPU per ingested event: "
          f"{full.cpu_per_event_us / ingest.cpu_per_event_us:.2f} (target <= 1.5)")
    if peer is not None:
        print(f"idhooks / Node-RED delivered events per second: {full.rate / peer.rate:.2f} (target >= 3)")
    exact = all(run.delivered == run.events and run.repeated == 0 for run in runs)
    if not exact:
        print("PROBLEM: an event was not delivered, or delivered more than once")
    return 0 if exact else 1
