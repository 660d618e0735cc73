"""A loopback HTTP target for the delivery benchmarks: it answers 200 at once and records, per
Idempotency-Key, how many calls arrived and when the first did (perf_counter, the benchmark's own clock).

It runs on an event loop (uvloop) in one thread of the benchmark process and parses with httptools, so it
takes little of the CPU that the systems under test share with it: http.server's thread per connection and
its header parsing cost the benchmark process more CPU per call than the idhooks lane spent sending it, on a
2-core machine where every percent taken from the servers shows up in their figures (issue 14).
A real HTTP/1.1 server all the same: keep-alive, Content-Length and chunked bodies, `Connection: close`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import httptools
import uvloop

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Connection(asyncio.Protocol):
    """One client connection: each complete request is recorded and answered in order."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.key = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.sink.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(_BAD)
            self.transport.close()

    def on_message_begin(self) -> None:
        self.key = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"idempotency-key":
            self.key = value

    def on_message_complete(self) -> None:
        self.sink.record(self.key.decode("latin-1"))
        if self.parser.should_keep_alive():
            self.transport.write(_OK)
        else:
            self.transport.write(_OK_CLOSE)
            self.transport.close()


class Sink:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.first: dict[str, float] = {}
        self.lock = threading.Lock()
        self.connections: set[_Connection] = set()  # open ones, closed by close(); only the loop's thread uses it
        self._loop = uvloop.new_event_loop()
        self._server = self._loop.run_until_complete(
            self._loop.create_server(lambda: _Connection(self), "127.0.0.1", 0, backlog=1024))
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-sink", daemon=True)
        self._thread.start()

    def record(self, key: str) -> None:
        now = time.perf_counter()
        with self.lock:
            self.calls[key] += 1
            self.first.setdefault(key, now)

    def wait_for(self, count: int, timeout: float) -> None:
        """Until `count` distinct keys have arrived, or `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.first) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.first.clear()

    def close(self) -> None:
        """Stop listening and close every connection still open (a client's idle keep-alive one included: the
        loop cannot close while a connection is open)."""
        async def stop() -> None:
            self._server.close()
            for connection in list(self.connections):
                connection.transport.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
