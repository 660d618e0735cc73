"""Soak under hostile traffic (`make soak`; not part of CI or `make test`): a real `idhooks serve` takes mixed
genuine and hostile traffic for IDHOOKS_SOAK_SECONDS (default 600) at IDHOOKS_SOAK_RATE requests per second
(default 200), delivering to a flaky target (1 answer in 4 is a 503) and a slow-drip target (1 answer in 50
sends its headers, then one byte every 2 s, until idhooks gives up at the attempt's 2 s deadline; each such
attempt holds a delivery slot for those 2 s, so the share is what 8 slots can absorb at this rate).

Hostile requests (1 in 4): bad signatures, bodies over the size limit, broken and deeply nested JSON,
numbers like 1e999, lone surrogates, usernames built to make `^(a+)+$` backtrack, replays of genuine
events (duplicates) and 60 KB hub verification parameters. Afterwards it waits for the queue to drain and
prints the server's RSS at start and end, the database size, and checks that every genuine event was
delivered, and none twice (counted by the targets from completed 2xx answers, per Idempotency-Key).
Exit 1 when a genuine event is missing or doubled. For a dry run: IDHOOKS_SOAK_SECONDS=30 make soak.
"""

from __future__ import annotations

import json
import os
import random
import select
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import Proc, free_port
from engine import catalog
from engine.verify.signature import sign

SECRET = "soak-secret-" + uuid.uuid4().hex
RULES = """
rules:
  - id: to-flaky
    event: login.loginFailed
    actions:
      - http: {to: flaky, path: /hook, json: {jti: "{{ envelope.jti }}", user: "{{ username }}"}}
  - id: to-slow
    event: login.loginSuccess
    actions:
      - http: {to: slow, path: /hook, json: {jti: "{{ envelope.jti }}"}}
  - id: regex-trap
    event: login.loginFailed
    when:
      all:
        - {claim: username, matches: '^(a+)+$'}
    actions:
      - log: {message: "regex trap"}
"""


class Target:
    """A loopback HTTP target counting completed 2xx answers per Idempotency-Key. `misbehave()` decides per
    request: 'ok', 'fail' (503) or 'drip' (headers, then one byte every 2 s until the client leaves)."""

    def __init__(self, misbehave: Callable[[], str]) -> None:
        self.delivered: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key", "")
                mode = misbehave()
                with target.lock:
                    target.outcomes[mode] += 1
                if mode == "fail":
                    self._answer(503, b"try later")
                elif mode == "drip":
                    self._drip()
                else:
                    self._answer(200, b"ok")
                    with target.lock:
                        target.delivered[key] += 1

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def _drip(self) -> None:
                self.close_connection = True
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.flush()
                    for _ in range(100):
                        readable, _, _ = select.select([self.connection], [], [], 2.0)
                        if readable and not self.connection.recv(1024):
                            return  # idhooks gave up on the attempt
                        self.wfile.write(b"x")
                        self.wfile.flush()
                except OSError:
                    return  # idhooks cut the connection at its deadline

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_config(folder: Path, port: int, flaky: str, slow: str) -> Path:
    (folder / "rules").mkdir(parents=True)
    (folder / "rules" / "soak.yaml").write_text(RULES)
    (folder / "secret").write_text(SECRET)
    retry = "retry: {backoff_initial: 1s, backoff_max: 4s}"
    path = folder / "config.yaml"
    path.write_text(f"""
server: {{host: 127.0.0.1, port: {port}, threads: 16, max_body_bytes: 1048576}}
store: {{url: "sqlite:///var/idhooks.db"}}
webhooks:
  - {{name: asgardeo, path: /webhooks/asgardeo, secret_file: secret, topics: ["*.schema.wso2.v1.event.*"]}}
rules: {{paths: [rules/]}}
delivery: {{workers: 16, per_destination_concurrency: 8, lease: 20s}}
destinations:
  flaky: {{type: http, base_url: "{flaky}", timeout: 2, {retry}}}
  slow: {{type: http, base_url: "{slow}", timeout: 2, {retry}}}
""")
    return path


def event(alias: str, **body: Any) -> dict[str, Any]:
    sample = catalog.entries()[alias].sample()
    sample["jti"] = str(uuid.uuid4())
    sample["iat"] = int(time.time() * 1000)
    next(iter(sample["events"].values())).update(body)
    return sample


def username(value: str) -> dict[str, Any]:
    return {"user": {"id": "u-soak", "claims": [{"uri": "http://wso2.org/claims/username", "value": value}]}}


class Traffic:
    """Sends one request per call of `send_one()`: 3 in 4 genuine, 1 in 4 hostile; keeps the ledger."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.expected: dict[str, str] = {}  # Idempotency-Key -> target name, for every genuine event
        self.accepted_hostile: dict[str, str] = {}  # same, for hostile events the server accepted
        self.answers: Counter[str] = Counter()
        self.replayable: list[tuple[bytes, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.session = threading.local()

    def http(self) -> requests.Session:
        if not hasattr(self.session, "s"):
            self.session.s = requests.Session()
        return self.session.s

    def post(self, body: bytes, signature: str | None = None) -> int:
        headers = {"Content-Type": "application/json",
                   "X-Hub-Signature": signature or sign(body, SECRET)}
        try:
            return self.http().post(self.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=30).status_code
        except requests.RequestException:
            return 0

    def send_one(self, rng: random.Random) -> None:
        if rng.random() < 0.75:
            self.genuine(rng)
        else:
            self.hostile(rng)

    def genuine(self, rng: random.Random) -> None:
        failed = rng.random() < 0.5
        sample = event("login.loginFailed" if failed else "login.loginSuccess")
        body = json.dumps(sample).encode()
        status = self.post(body)
        with self.lock:
            self.answers[f"genuine {status}"] += 1
            if status == 202:
                rule = "to-flaky" if failed else "to-slow"
                self.expected[f"{sample['jti']}:{rule}:0"] = rule
                if len(self.replayable) < 1000:
                    self.replayable.append((body, {}))

    def hostile(self, rng: random.Random) -> None:
        kind = rng.choice(["bad_signature", "too_large", "broken_json", "deep", "infinity", "surrogate",
                           "regex", "replay", "hub_notice"])
        sample = event("login.loginFailed")
        if kind == "bad_signature":
            status = self.post(json.dumps(sample).encode(), "sha256=" + "0" * 64)
        elif kind == "too_large":
            status = self.post(json.dumps({**sample, "pad": "x" * 1_100_000}).encode())
        elif kind == "broken_json":
            status = self.post(b'{"jti": "' + sample["jti"].encode() + b'", "events": {')
        elif kind == "deep":
            status = self.post(b'{"jti": "x", "events": ' + b"[" * 20000 + b"]" * 20000 + b"}")
        elif kind == "infinity":
            sample = event("login.loginFailed", count="<n>")
            status = self.post(json.dumps(sample).replace('"<n>"', "1e999").encode())
        elif kind == "surrogate":
            sample = event("login.loginFailed", **username("jane\ud800"))
            status = self.post(json.dumps(sample).encode())
        elif kind == "regex":
            sample = event("login.loginFailed", **username("a" * 5000 + "!"))
            status = self.post(json.dumps(sample).encode())
        elif kind == "replay":
            with self.lock:
                replay = rng.choice(self.replayable) if self.replayable else None
            status = self.post(replay[0]) if replay else 0
        else:
            try:
                status = self.http().get(self.url + "/webhooks/asgardeo", timeout=30, params={
                    "hub.mode": "denied", "hub.topic": "t" * 60_000, "hub.reason": "r" * 60_000}).status_code
            except requests.RequestException:
                status = 0
        with self.lock:
            self.answers[f"{kind} {status}"] += 1
            if status == 202 and kind in ("infinity", "surrogate", "regex"):
                self.accepted_hostile[f"{sample['jti']}:to-flaky:0"] = "to-flaky"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def db_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in (folder / "var").glob("idhooks.db*"))


def run_traffic(traffic: Traffic, seconds: float, rate: float, senders: int = 12) -> float:
    """Send at `rate` requests/s for `seconds` from `senders` threads; the rate actually reached."""
    sent = [0]
    lock = threading.Lock()
    start = time.monotonic()
    end = start + seconds

    def sender(index: int) -> None:
        rng = random.Random(index)
        while True:
            with lock:
                number = sent[0]
                sent[0] += 1
            due = start + number / rate
            if due >= end:
                return
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            traffic.send_one(rng)

    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return min(sent[0], int(seconds * rate)) / (time.monotonic() - start)


def main() -> int:
    seconds = float(os.environ.get("IDHOOKS_SOAK_SECONDS", "600"))
    rate = float(os.environ.get("IDHOOKS_SOAK_RATE", "200"))
    flaky = Target(lambda: "fail" if random.random() < 0.25 else "ok")
    slow = Target(lambda: "drip" if random.random() < 0.02 else "ok")
    with tempfile.TemporaryDirectory(prefix="idhooks-soak-") as tmp:
        folder = Path(tmp)
        port = free_port()
        config = write_config(folder, port, flaky.url, slow.url)
        server = Proc(["-m", "engine", "serve", "--config", str(config)], port, cwd=folder)
        try:
            rss_start = rss_kb(server.proc.pid)
            traffic = Traffic(f"http://127.0.0.1:{port}")
            print(f"soak: {seconds:g} s at {rate:g} requests/s (3 in 4 genuine) against idhooks serve "
                  f"(pid {server.proc.pid}), RSS at start {rss_start / 1024:.1f} MB", flush=True)
            reached = run_traffic(traffic, seconds, rate)
            rss_traffic_end = rss_kb(server.proc.pid)
            drained = wait_for_delivery(traffic, flaky, slow, timeout=max(120.0, seconds / 2))
            rss_end = rss_kb(server.proc.pid)
            size = db_bytes(folder)
        finally:
            server.stop()
            flaky.close()
            slow.close()
    return report(traffic, flaky, slow, reached, rss_start, rss_traffic_end, rss_end, size, drained)


def delivered(flaky: Target, slow: Target) -> dict[str, Counter[str]]:
    return {"to-flaky": flaky.delivered, "to-slow": slow.delivered}


def wait_for_delivery(traffic: Traffic, flaky: Target, slow: Target, timeout: float) -> float:
    """Seconds until every accepted event's job (genuine or hostile) arrived (bounded by `timeout`)."""
    started = time.monotonic()
    wanted = {**traffic.expected, **traffic.accepted_hostile}
    while time.monotonic() - started < timeout:
        by_target = delivered(flaky, slow)
        if all(by_target[rule][key] for key, rule in wanted.items()):
            break
        time.sleep(0.5)
    return time.monotonic() - started


def report(traffic: Traffic, flaky: Target, slow: Target, reached: float, rss_start: int, rss_traffic_end: int,
           rss_end: int, size: int, drained: float) -> int:
    by_target = delivered(flaky, slow)
    missing = [key for key, rule in traffic.expected.items() if not by_target[rule][key]]
    twice = [key for key, rule in traffic.expected.items() if by_target[rule][key] > 1]
    hostile_ok = sum(1 for key, rule in traffic.accepted_hostile.items() if by_target[rule][key] == 1)
    print(f"requests: {sum(traffic.answers.values())} at {reached:.1f}/s reached; answers by kind and status:")
    for name, count in sorted(traffic.answers.items()):
        print(f"  {name:<28} {count}")
    print(f"targets: flaky {dict(flaky.outcomes)}, slow-drip {dict(slow.outcomes)}")
    print(f"RSS: start {rss_start / 1024:.1f} MB, end of traffic {rss_traffic_end / 1024:.1f} MB, "
          f"after drain {rss_end / 1024:.1f} MB; database {size / 1024 / 1024:.1f} MB")
    print(f"genuine events accepted: {len(traffic.expected)}; delivered: {len(traffic.expected) - len(missing)} "
          f"(drained {drained:.1f} s after the traffic); missing: {len(missing)}; delivered twice: {len(twice)}")
    print(f"hostile events accepted and delivered once: {hostile_ok} of {len(traffic.accepted_hostile)}")
    ok = not missing and not twice
    print("PASS: every genuine event delivered, none twice" if ok else
          f"FAIL: missing {missing[:5]} twice {twice[:5]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
