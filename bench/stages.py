"""Instructions per event of each stage of a delivered event, counted by valgrind (callgrind): the repeatable
companion of `bench/e2e.py --saturate` (issue 14, target 2). On this project's shared 2-core machines the CPU
time of one run drifts by +-30 % within minutes, more than most changes to the hot path are worth; an
instruction count is the same on every run (+-3 % here, from how the threads happen to batch), so a change to
one stage shows as that stage's number moving, in one command.

Each stage runs in its own process under valgrind twice, with `--events` and five times as many; the difference
divided by the extra events is the cost of one more event, without start-up. In the same run:

- bare:     HMAC-SHA256 over the raw body and json.loads: the work of bench/baseline_app.py (target 1's baseline);
- ingest:   idhooks intake in one process: verify, parse, group commit on SQLite (the async intake: 16 events in
            flight, as from wrk's 16 connections), no processor;
- match:    ingest, then the processor: evaluate the rule of bench/e2e.py, record decision and job;
- deliver:  ingest, match, then the delivery lane sends each job to a loopback sink (in another process, not
            counted) and acknowledges it;
- floor:    the same POSTs sent by a minimal keep-alive client (uvloop, httptools, no checks), to the same sink.

It prints the instructions of one event per stage (match = match - ingest, deliver = deliver - match) and three
ratios: delivered / ingested (the instruction counterpart of target 2's CPU ratio), the lane against the floor,
intake against the bare app. What it does not count: the kernel (socket and file writes, about a third of a
delivery's CPU), waiting for the GIL, other processes. A figure to compare between commits, not a CPU time.

    python bench/stages.py [--events 300] [--stages bare,ingest,match,deliver,floor]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import RULE  # the rule and action of the end-to-end benchmarks
from bench.ingest import make_bodies
from bench.procs import write_bench_config
from bench.sink import Sink

STAGES = ("bare", "ingest", "match", "deliver", "floor")
SECRET = "bench-stages-secret"
"""Fixed, unlike bench/ingest.py's random one: the parent signs, each child verifies."""
IN_FLIGHT = 16
"""Events the intake stage has in flight at once (wrk's connections in the other benchmarks)."""


# -- one stage, in the process valgrind runs ---------------------------------------------------------------
Signed = list[tuple[str, bytes]]
"""(X-Hub-Signature, body) of each event, made by the parent: signing is the hub's work, not counted."""


def run_bare(events: Signed) -> None:
    import hashlib
    import hmac
    import json

    secret = SECRET.encode()
    for given, body in events:
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.lower(), expected):
            raise SystemExit("bad signature")
        json.loads(body)


def _counter(metric: Any) -> float:
    """A prometheus child's current value (read from memory: polling it costs no store read)."""
    return float(metric._value.get())


def run_idhooks(stage: str, events: Signed, sink_url: str) -> None:
    """Ingest `events` through the async intake of a Service, and for match/deliver wait until every event
    is matched / every job delivered."""
    from engine.config.settings import load_config
    from engine.server import Service
    from engine.store import open_store

    folder = Path(tempfile.mkdtemp(prefix="idhooks-stages-"))
    try:
        os.chdir(folder)
        extra = f'destinations:\n  sink: {{type: http, base_url: "{sink_url}"}}\n'
        config = load_config(write_bench_config(folder, 1, 8, SECRET, rules=RULE, extra=extra))
        store = open_store(config.store)
        service = Service(config, store)
        # Nothing polls the store: under valgrind a run lasts minutes, and a poll a second (the delivery threads'
        # claim, which scans the lane's pending jobs; the processor's) would count in proportion to that time.
        service.processor.poll_interval = service.worker.poll_interval = 3600.0
        if stage in ("match", "deliver"):
            service.processor.start()
        if stage == "deliver":
            service.worker.start()
        webhook = config.webhooks[0]
        pool = ThreadPoolExecutor(4)

        async def blocking(fn: Any, *args: Any) -> Any:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

        async def one(signature: str, body: bytes) -> None:
            headers = {"content-type": "application/json", "x-hub-signature": signature}
            await service.sink.receive_async(webhook, headers, body, "127.0.0.1", blocking)

        async def all_of_them() -> None:
            for start in range(0, len(events), IN_FLIGHT):
                await asyncio.gather(*(one(*event) for event in events[start:start + IN_FLIGHT]))

        asyncio.run(all_of_them())
        metrics = service.metrics
        done = {"match": metrics.child(metrics.rule_matches, "e2e"),
                "deliver": metrics.child(metrics.action_successes, "sink")}.get(stage)
        deadline = time.monotonic() + 600
        while done is not None and _counter(done) < len(events):
            if time.monotonic() > deadline:
                raise SystemExit(f"{stage}: only {_counter(done):.0f} of {len(events)} events got through")
            time.sleep(0.2)
        service.processor.stop()
        service.worker.stop()
        store.close()
        pool.shutdown()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_floor(count: int, sink_url: str) -> None:
    """`count` POSTs of a two-field JSON body with an Idempotency-Key, over two keep-alive connections (the
    lane's two slots for one destination), each answer parsed by httptools: no checks, no bookkeeping."""
    import httptools
    import uvloop

    host, port = re.match(r"http://([^:/]+):(\d+)", sink_url).groups()  # type: ignore[union-attr]

    class Client(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.answered: asyncio.Future[None] | None = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            assert self.answered is not None
            self.answered.set_result(None)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        clients = [(await loop.create_connection(Client, host, int(port)))[1] for _ in range(2)]

        async def send(client: Client, numbers: range) -> None:
            for number in numbers:
                body = b'{"user": "jane.doe@example.com", "reason": "e2e"}'
                client.answered = loop.create_future()
                client.transport.write(b"POST /sink HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                                       b"Idempotency-Key: floor-%d\r\nContent-Length: %d\r\n\r\n%s"
                                       % (host.encode(), port.encode(), number, len(body), body))
                await client.answered

        await asyncio.gather(*(send(client, range(index, count, 2)) for index, client in enumerate(clients)))

    uvloop.run(main())


def child(stage: str, count: int, sink_url: str, prepared: Path) -> None:
    if stage == "floor":
        run_floor(count, sink_url)
        return
    events = [(signature.decode(), body) for signature, _, body in
              (line.partition(b"\t") for line in prepared.read_bytes().splitlines()[:count])]
    if stage == "bare":
        run_bare(events)
    else:
        run_idhooks(stage, events, sink_url)


def prepare(path: Path, count: int) -> None:
    """`count` signed events, a line each: signature, tab, body (a body holds no newline or tab)."""
    from engine.verify.signature import sign

    path.write_bytes(b"".join(sign(body, SECRET).encode() + b"\t" + body + b"\n" for body in make_bodies(count)))


# -- the parent: valgrind around each stage --------------------------------------------------------------
def instructions(stage: str, events: int, sink_url: str, prepared: Path) -> int:
    """Instructions (callgrind's Ir, every thread) of one run of `stage` over `events` events."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        result = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                                 __file__, "--child", stage, "--events", str(events), "--sink", sink_url,
                                 "--prepared", str(prepared)],
                                capture_output=True, text=True, check=False)
        found = re.search(r"Collected : (\d+)", result.stderr)
        if result.returncode != 0 or found is None:
            raise SystemExit(f"{stage} under valgrind failed:\n{result.stderr[-2000:]}")
        return int(found.group(1))


def per_event(stage: str, events: int, sink_url: str, prepared: Path) -> float:
    """Instructions of one more event: two runs (events, 5 x events) side by side, the difference per event."""
    with ThreadPoolExecutor(2) as pool:
        small, large = pool.map(lambda count: instructions(stage, count, sink_url, prepared), (events, 5 * events))
    return (large - small) / (4 * events)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300, help="events of the shorter run (default 300)")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated, from " + ", ".join(STAGES))
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    parser.add_argument("--prepared", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.events, args.sink, args.prepared)
        return 0
    stages = [stage for stage in args.stages.split(",") if stage]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}: choose from {', '.join(STAGES)}")
    if shutil.which("valgrind") is None:
        print("bench/stages.py: valgrind is not installed (apt-get install valgrind); skipped")
        return 0
    sink = Sink()
    folder = tempfile.TemporaryDirectory(prefix="idhooks-stages-")
    prepared = Path(folder.name) / "events"
    prepare(prepared, 5 * args.events)
    try:
        print(f"stages: instructions per event under valgrind ({args.events} and {5 * args.events} events per "
              "stage, the difference per event; user space only)")
        counts: dict[str, float] = {}
        for stage in stages:
            counts[stage] = per_event(stage, args.events, sink.url, prepared)
            own = counts[stage] - counts.get({"match": "ingest", "deliver": "match"}.get(stage, ""), 0.0)
            print(f"  {stage:<8} {counts[stage]:>11,.0f} instructions per event" +
                  (f"  (this stage alone: {own:,.0f})" if own != counts[stage] else ""), flush=True)
    finally:
        sink.close()
        folder.cleanup()
    if {"ingest", "deliver"} <= counts.keys():
        print(f"delivered / ingested instructions: {counts['deliver'] / counts['ingest']:.2f} "
              "(target 2 asks <= 1.5 of CPU, which also counts the kernel)")
    if {"match", "deliver", "floor"} <= counts.keys():
        print(f"lane / floor client: {(counts['deliver'] - counts['match']) / counts['floor']:.1f}x")
    if {"bare", "ingest"} <= counts.keys():
        print(f"intake / bare verify-and-parse: {counts['ingest'] / counts['bare']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
