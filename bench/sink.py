"""A loopback HTTP target for the delivery benchmarks: it answers 200 at once and records, per
Idempotency-Key, how many calls arrived and when the first did (perf_counter, the benchmark's own clock)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Sink:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.first: dict[str, float] = {}
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.perf_counter()
                key = self.headers.get("Idempotency-Key", "")
                with sink.lock:
                    sink.calls[key] += 1
                    sink.first.setdefault(key, now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

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
        self.server.shutdown()
        self.server.server_close()
