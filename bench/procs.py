"""Start and stop server processes for the benchmarks (idhooks serve, the baseline app)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import requests

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
"""The unit of /proc's CPU times."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process and its reaped children so far (Linux /proc), to tell a server's
    cost from the machine's load (adnanh/webhook's /bin/true runs count as its own)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def tree_pids(pid: int) -> Iterator[int]:
    """A process and its live descendants (`serve --processes N` runs N children); one that exits meanwhile is
    passed over."""
    yield pid
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            yield from tree_pids(int(child))


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and all its live descendants."""
    total = 0.0
    for member in tree_pids(pid):
        try:
            total += cpu_seconds(member)
        except OSError:  # exited meanwhile (ENOENT, or ESRCH when it went between open and read)
            pass
    return total


def thread_cpu_seconds(pid: int) -> Counter[str]:
    """CPU seconds so far of each thread name, over a process and its live descendants: which stage the CPU went
    to (idhooks names its threads for the operating system, engine/threadnames.py: `idhooks` is the main thread,
    the intake's event loop; `granian` granian's HTTP threads). Threads of one name are added up (`delivery-0` of
    two processes, say)."""
    seconds: Counter[str] = Counter()
    for member in tree_pids(pid):
        try:
            tasks = list(Path(f"/proc/{member}/task").iterdir())
        except OSError:  # exited meanwhile (ENOENT, or ESRCH when it went between open and read)
            continue
        for task in tasks:
            try:
                name = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended meanwhile
                continue
            seconds[name] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # its utime + stime
    return seconds


def per_thread_us(before: Counter[str], after: Counter[str], events: int) -> dict[str, float]:
    """Microseconds of CPU per event of each thread name between two `thread_cpu_seconds` readings."""
    return {name: (after[name] - before[name]) / max(1, events) * 1e6 for name in after}


def threads_line(us: dict[str, float], least: float = 1.0) -> str:
    """`    by thread: idhooks 114, delivery-lane 97, ... us/event`, the threads that spent at least `least`."""
    busiest = sorted(((value, name) for name, value in us.items() if value >= least), reverse=True)
    return "    by thread: " + ", ".join(f"{name} {value:.0f}" for value, name in busiest) + " us/event"


class Proc:
    """A server subprocess that is healthy (GET `health` answers) once constructed. `args` run under this
    Python unless `command` is given (a peer program such as adnanh/webhook)."""

    def __init__(self, args: list[str], port: int, cwd: Path | None = None, env: dict | None = None,
                 command: list[str] | None = None, health: str = "/healthz") -> None:
        self.port = port
        self.proc = subprocess.Popen(command or [sys.executable, *args], cwd=cwd or ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{args} exited with {self.proc.returncode}")
            try:
                requests.get(f"http://127.0.0.1:{port}{health}", timeout=1)
                return
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.05)
        raise RuntimeError(f"{args} did not start")

    def cpu(self) -> float:
        """CPU seconds used so far by the server and its child processes."""
        return tree_cpu_seconds(self.proc.pid)

    def thread_cpu(self) -> Counter[str]:
        """CPU seconds used so far by each thread name of the server and its child processes."""
        return thread_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def write_bench_config(directory: Path, port: int, threads: int, secret: str, store_url: str | None = None,
                       rules: str = "", extra: str = "") -> Path:
    """A config for benchmarking: one webhook, a rules folder holding `rules` (empty = ingest only)."""
    (directory / "rules").mkdir(parents=True, exist_ok=True)
    if rules:
        (directory / "rules" / "bench.yaml").write_text(rules)
    (directory / "secret").write_text(secret)
    path = directory / "config.yaml"
    path.write_text(f"""
server: {{host: 127.0.0.1, port: {port}, threads: {threads}}}
store: {{url: "{store_url or 'sqlite:///var/idhooks.db'}"}}
webhooks:
  - {{name: asgardeo, path: /webhooks/asgardeo, secret_file: secret}}
rules: {{paths: [rules/]}}
{extra}
""")
    return path


def shared_store(config: Path, url: str, group: str) -> None:
    """Make a bench config's store deployment `group` of the shared store at `url` (Redis or PostgreSQL)."""
    config.write_text(config.read_text().replace(
        f'store: {{url: "{url}"}}', f'store: {{url: "{url}", group: "{group}", spool_dir: spool}}'))


def open_deployment(url: str, group: str, folder: Path):
    """A store of deployment `group` at `url` (SQLite: the file), for checking what a benchmark stored."""
    from engine.config.settings import StoreConfig
    from engine.store import open_store

    return open_store(StoreConfig(url=url, group=group, spool_dir=folder / "check-spool"))


def forget_deployment(url: str, group: str, folder: Path) -> None:
    """Delete benchmark deployment `group` from a shared store: its Redis keys, or its PostgreSQL schema."""
    if url.startswith("sqlite:///"):
        return
    store = open_deployment(url, group, folder)
    try:
        if hasattr(store, "redis"):
            keys = list(store.redis.scan_iter(match=store.prefix + "*", count=1000))
            if keys:
                store.redis.delete(*keys)
        else:
            with store._tx("dropping a benchmark schema") as cur:
                cur.execute(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE')
    finally:
        store.close()
