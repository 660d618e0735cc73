"""Saturating end-to-end benchmark (`bench/e2e.py --saturate`): the most events per second that are
acknowledged, stored, matched by one rule and delivered by its `http` action to a loopback sink, and the
server's CPU per delivered event. In the same run:

- idhooks with no rules (ingest only): its CPU per ingested event is the yardstick; the target is CPU per
  delivered event <= 1.5x CPU per ingested event;
- Node-RED on the same flow (HTTP in, HMAC function, switch on the event URI, HTTP request to the same sink,
  202), installed from npm into a temporary folder (skipped with a message when npm cannot fetch it); the target
  is idhooks throughput >= 3x Node-RED's.

The load comes from wrk (Debian's package, as in issue 14's table and in bench/ingest.py): `--seconds` of
16 keep-alive connections over `--events` distinct signed events, at full speed. A system's rate is the
events it accepted over the time from the first POST to the last delivery (ingest only: wrk's duration), and
its CPU is counted over the same span. Without wrk (`--loadgen python`, or when it cannot be installed),
bench/loadgen.py sends every prepared event once instead; it takes most of a core from the servers measured,
and the sink's share of the machine grows with it (see README, "What each change bought", for figures of both).

Each system runs `--passes` times (default 3), interleaved with the others so that a change in the machine's
load hits all of them; the ratios are of the medians (single runs on a shared 2-core machine varied by +-20 %).
Every run checks that each accepted event reached the sink exactly once, and that wrk never ran out of
distinct events (exit status 1 otherwise).

    python bench/e2e.py --saturate [--seconds 6] [--events N] [--loadgen wrk|python] [--passes 3]
                                   [--processes 1|N|auto] [--cpu-pinning auto|always|never] [--no-node-red]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.ingest import SECRET, Load, make_bodies, requests_for
from bench.loadgen import run_load
from bench.peers import ensure_node_red, start_node_red
from bench.procs import Proc, free_port, per_thread_us, threads_line, write_bench_config
from bench.sink import Sink
from bench.wrk import ensure_wrk, run_wrk
from bench.e2e import RULE  # the same rule and action as the fixed-rate benchmark
from engine.cli.commands.serve import processes_value
from engine.cpus import PIN_MODES
CONCURRENCY = 16


@dataclass
class Run:
    name: str
    events: int
    seconds: float  # first POST to the last delivery (ingest only: to the last 202)
    cpu: float  # server CPU seconds over the run
    delivered: int
    repeated: int
    threads: dict[str, float]  # CPU per event of each thread name (us)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_event_us(self) -> float:
        return self.cpu / self.events * 1e6

    def line(self) -> str:
        return (f"  {self.name:<34} {self.rate:7.0f} events/s  CPU {self.cpu_per_event_us:6.0f} us/event  "
                f"delivered {self.delivered}/{self.events}  repeated {self.repeated}\n{threads_line(self.threads)}")


def drive(server: Proc, name: str, path: str, sink: Sink | None, load: Load) -> Run:
    """Load the server at full speed (after a warm-up); wait for the sink to have every accepted event."""
    run_load("127.0.0.1", server.port, requests_for(server.port, make_bodies(200), path), CONCURRENCY)
    if sink is not None:
        sink.wait_for(200, 60)
        sink.reset()
    requests = requests_for(server.port, load.bodies, path)
    cpu_before, threads_before = server.cpu(), server.thread_cpu()
    started = time.perf_counter()
    if load.wrk:
        result = run_wrk(load.wrk, "127.0.0.1", server.port, requests, CONCURRENCY, load.seconds)
    else:
        result = run_load("127.0.0.1", server.port, requests, CONCURRENCY)
    accepted = result.statuses.get(202, 0)
    if sink is not None:
        sink.wait_for(accepted, 120)
        finished = max(sink.first.values(), default=time.perf_counter())
    else:
        finished = started + result.seconds
    cpu, threads = server.cpu() - cpu_before, server.thread_cpu()
    if accepted != result.requests:
        print(f"    intake statuses {dict(sorted(result.statuses.items()))}")
    if result.repeated:
        print(f"    PROBLEM: wrk ran out of distinct events and sent {result.repeated} again (raise --events)")
    delivered = len(sink.first) if sink is not None else accepted
    repeated = sum(sink.calls.values()) - len(sink.calls) if sink is not None else 0
    # When wrk stops, the requests still in flight on its connections are answered but not counted: their
    # events are accepted and delivered all the same (at most one per connection).
    events = delivered if accepted <= delivered <= accepted + CONCURRENCY else accepted
    return Run(name, events, finished - started, cpu, delivered, repeated + result.repeated,
               per_thread_us(threads_before, threads, events))


def idhooks_run(folder: Path, name: str, sink: Sink | None, load: Load, serve_args: list[str]) -> Run:
    workdir = Path(tempfile.mkdtemp(dir=folder))
    port = free_port()
    extra = f'destinations:\n  sink: {{type: http, base_url: "{sink.url}"}}\n' if sink else ""
    config = write_bench_config(workdir, port, 8, SECRET, rules=RULE if sink else "", extra=extra)
    server = Proc(["-m", "engine", "serve", "--config", str(config), *serve_args], port,
                  cwd=workdir)
    try:
        return drive(server, name, "/webhooks/asgardeo", sink, load)
    finally:
        server.stop()


def node_red_run(red: Path, folder: Path, sink: Sink, load: Load) -> Run:
    server = start_node_red(red, folder, SECRET, sink.url + "/sink")
    try:
        return drive(server, "Node-RED (same flow)", "/webhooks/asgardeo", sink, load)
    finally:
        server.stop()


def median(runs: list[Run]) -> Run:
    """The pass with the median throughput (the lower middle one of an even number)."""
    return sorted(runs, key=lambda run: run.rate)[(len(runs) - 1) // 2]


def median_line(runs: list[Run]) -> str:
    middle = median(runs)
    return (f"  {middle.name:<34} {middle.rate:7.0f} events/s  CPU {middle.cpu_per_event_us:6.0f} us/event  "
            f"(median of {len(runs)}: " + "/".join(f"{run.rate:.0f}" for run in runs) + " events/s)\n"
            + threads_line(middle.threads))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saturate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each wrk pass (default 6)")
    parser.add_argument("--events", type=int, default=None,
                        help="distinct events prepared (default 50000 with wrk, 3000 with --loadgen python)")
    parser.add_argument("--loadgen", choices=("wrk", "python"), default="wrk")
    parser.add_argument("--passes", type=int, default=3, help="interleaved passes per system (default 3)")
    parser.add_argument("--processes", type=processes_value, default=1,
                        help="idhooks serve --processes: N or auto, one per CPU (default 1)")
    parser.add_argument("--cpu-pinning", choices=PIN_MODES, help="idhooks serve --cpu-pinning (default: its own)")
    parser.add_argument("--no-node-red", action="store_true", help="skip the Node-RED peer")
    args = parser.parse_args(argv)
    wrk = ensure_wrk() if args.loadgen == "wrk" else None
    load = Load(wrk, make_bodies(args.events or (50000 if wrk else 3000)), args.seconds, CONCURRENCY)
    print(f"e2e saturating: {load.describe()}, SQLite store, {args.processes} idhooks process(es), cpu pinning "
          f"{args.cpu_pinning or 'auto'}, "
          f"{args.passes} interleaved passes each, medians")
    serve_args = ["--processes", str(args.processes)] + (["--cpu-pinning", args.cpu_pinning] if args.cpu_pinning else [])
    ingests: list[Run] = []
    fulls: list[Run] = []
    peers: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="idhooks-saturate-") as tmp:
        folder = Path(tmp)
        red = None if args.no_node_red else ensure_node_red(folder / "node-red")
        sink = Sink()
        try:
            for number in range(1, args.passes + 1):
                print(f"pass {number}:")
                ingests.append(idhooks_run(folder, "idhooks ingest only (no rules)", None, load,
                                           serve_args))
                print(ingests[-1].line())
                sink.reset()
                fulls.append(idhooks_run(folder, "idhooks rule + http action", sink, load, serve_args))
                print(fulls[-1].line())
                if red is not None:
                    sink.reset()
                    peers.append(node_red_run(red, folder, sink, load))
                    print(peers[-1].line())
        finally:
            sink.close()
    print("medians:")
    for runs in (ingests, fulls, peers):
        if runs:
            print(median_line(runs))
    full = median(fulls)
    cpu_ratio = statistics.median(run.cpu_per_event_us for run in fulls) / \
        statistics.median(run.cpu_per_event_us for run in ingests)
    print(f"CPU per delivered event / CPU per ingested event (median CPU of each): {cpu_ratio:.2f} (target <= 1.5)")
    if peers:
        print(f"idhooks / Node-RED delivered events per second: {full.rate / median(peers).rate:.2f} (target >= 3)")
    exact = all(run.delivered == run.events and run.repeated == 0 for run in fulls + peers) and \
        all(run.repeated == 0 for run in ingests)
    if not exact:
        print("PROBLEM: an event was not delivered, or delivered more than once")
    return 0 if exact else 1
