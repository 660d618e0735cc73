"""A small HTTP/1.1 keep-alive load generator (asyncio, raw sockets) for the benchmarks.

Why not `requests` in threads: on a 2-core machine a thread-per-request client burns the CPU the server
needs. Each of `concurrency` connections sends its next prepared request as soon as the previous answer
arrives, and every latency is recorded.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    cpu_per_request: float = 0.0  # the server's CPU seconds per request, when the benchmark measured it
    quantiles: dict[float, float] = field(default_factory=dict)  # from wrk, which reports no single latencies
    repeated: int = 0  # requests sent a second time (wrk, when it ran out of prepared requests)
    threads: dict[str, float] = field(default_factory=dict)  # the server's CPU per request by thread name (us)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return self.quantiles.get(q, 0.0)
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def summary(self) -> str:
        return (f"{self.throughput:8.0f} req/s  p50 {self.percentile(50) * 1000:6.2f} ms  "
                f"p99 {self.percentile(99) * 1000:6.2f} ms  statuses {dict(sorted(self.statuses.items()))}")


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}",
             "Connection: keep-alive"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _worker(host: str, port: int, queue: list[bytes], result: LoadResult) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while queue:
            request = queue.pop()
            started = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            result.latencies.append(time.perf_counter() - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _run(host: str, port: int, requests: list[bytes], concurrency: int) -> LoadResult:
    queue = list(reversed(requests))
    result = LoadResult(requests=len(requests), seconds=0.0)
    started = time.perf_counter()
    await asyncio.gather(*(_worker(host, port, queue, result) for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def run_load(host: str, port: int, requests: list[bytes], concurrency: int = 16) -> LoadResult:
    """Send every prepared request over `concurrency` keep-alive connections; timings and statuses."""
    return asyncio.run(_run(host, port, requests, concurrency))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
