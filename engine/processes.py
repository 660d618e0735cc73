"""`server.processes: N` (`idhooks serve --processes N|auto`): use every core of the host.

One Python process is bound to one core by the GIL. The supervisor binds the sockets once and starts N
`idhooks serve` children that inherit them (the kernel hands each new connection to one child; on the main
port under granian each child listens on a socket of its own with SO_REUSEPORT, see `listening_socket`), each
with its own intake, processor and delivery workers, all sharing the store: SQLite in WAL mode (each child
group-commits its own batches; `BEGIN IMMEDIATE` and the busy timeout order the children's writes) or Redis.

The supervisor itself serves nothing and holds no store connection while children run:
- before the first child starts it takes over the leases of a previous deployment (a child never does, so a
  restarted child cannot steal work its live siblings hold; what a crashed child held is taken over by any
  child when its lease ends);
- a child that dies is started again (after 1 s, doubling up to 30 s while it keeps dying young);
- SIGTERM/SIGINT is passed on to every child, which drains as a single `serve` does; SIGHUP is passed on, so
  every child reloads config.yaml and the rules;
- each child runs on a CPU of its own when there is one CPU per child (`server.cpu_pinning`, engine/cpus.py's
  `pinned_cpus` says why); a restarted child gets its predecessor's CPU;
- metrics: the children keep their counters in a folder of memory-mapped files (prometheus_client's
  multiprocess mode), so /metrics shows the sum over all children whichever child answers the scrape.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from engine.config.settings import Config
from engine.cpus import cpu_limits, pinned_cpus, usable_cpus
from engine.store import open_store

log = logging.getLogger("idhooks.processes")

LISTEN_FD_ENV = "IDHOOKS_LISTEN_FD"
METRICS_FD_ENV = "IDHOOKS_METRICS_FD"
API_FD_ENV = "IDHOOKS_API_FD"
"""Set by the supervisor for its children: the inherited listening sockets. A child never takes over leases."""
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
YOUNG = 10.0  # a child that dies sooner than this after its start is restarted with a growing delay
STOP_GRACE = 60.0  # how long the children may take to drain after SIGTERM before they are killed
POLL = 0.2
PR_SET_PDEATHSIG = 1


def resolve_processes(value: int | str) -> int:
    """`auto` is the number of CPUs this process may use: its affinity and its cgroup's CPU quota (engine/cpus.py).
    What it came to, and from what, is logged once (by the supervisor, not again by each child)."""
    if value != "auto":
        return int(value)
    affinity, quota = cpu_limits()
    count = usable_cpus(affinity, quota)
    if not is_child():
        log.info("processes: auto", extra={"processes": count, "cpu_affinity": affinity, "cpu_quota": quota})
    return count


def is_child() -> bool:
    """Whether this `serve` was started by the supervisor."""
    return LISTEN_FD_ENV in os.environ


def inherited_socket(env_name: str) -> socket.socket | None:
    """The listening socket the supervisor passed in `env_name`, if any."""
    fd = os.environ.get(env_name)
    return socket.socket(fileno=int(fd)) if fd else None


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket the children inherit (IPv6 when `host` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    sock.set_inheritable(True)
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """The port bound with SO_REUSEPORT but not listening: it stays the deployment's while children come and go,
    and each child listens on its own socket of the same port (`listening_socket`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def listening_socket(env_name: str, host: str, port: int) -> socket.socket:
    """The socket a `serve` listens on: its own (no supervisor), the one it inherited, or, where the supervisor
    only reserved the port (`reserve`), a socket of its own on the same port with SO_REUSEPORT. Then the kernel
    spreads new connections over the children; with one shared listening socket, the first child's accept loop
    (granian's) took every connection of a burst and the other children idled (issue 14)."""
    inherited = inherited_socket(env_name)
    if inherited is None:
        return bind(host, port)
    if inherited.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return inherited
    own = socket.socket(inherited.family, socket.SOCK_STREAM)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    own.bind(inherited.getsockname())
    own.listen(1024)
    inherited.close()
    return own


@dataclass
class Child:
    """One supervised `idhooks serve` process."""

    index: int
    proc: subprocess.Popen[bytes]
    started: float
    delay: float = RESTART_DELAY
    restart_at: float | None = None
    exits: list[int] = field(default_factory=list)


class Supervisor:
    """Starts, watches and stops the N children of `idhooks serve --processes N`."""

    def __init__(self, config: Config, argv: list[str], processes: int, *, clock: Any = time.monotonic) -> None:
        """`argv` is the child command line (`python -m engine serve --config ...`)."""
        self.config = config
        self.argv = argv
        self.processes = processes
        self.clock = clock
        self.children: list[Child] = []
        self.stopping = False
        self.sockets: dict[str, socket.socket] = {}
        self.metrics_dir = ""
        self.cpus: list[int] | None = None  # the CPU of each child, by index, when pinned

    def run(self) -> int:
        server = self.config.server
        # granian's children each listen on their own socket of the port (listening_socket); waitress's share one
        claim = reserve if server.http_server == "granian" else bind
        self.sockets[LISTEN_FD_ENV] = claim(server.host, server.port)
        if self.config.metrics.listen is not None:
            self.sockets[METRICS_FD_ENV] = bind(*self.config.metrics.listen)
        if self.config.api.listen is not None:
            self.sockets[API_FD_ENV] = bind(*self.config.api.listen)
        self.metrics_dir = tempfile.mkdtemp(prefix="idhooks-metrics-")
        self.take_over_leases()
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        port = self.sockets[LISTEN_FD_ENV].getsockname()[1]
        log.info("idhooks serving with several processes",
                 extra={"url": f"http://{server.host}:{port}", "processes": self.processes})
        self.cpus = pinned_cpus(server.cpu_pinning, self.processes, os.sched_getaffinity(0))
        if self.cpus is not None:
            log.info("serve processes pinned, each to a CPU", extra={"cpu_pinning": server.cpu_pinning,
                                                                   "cpus": self.cpus})
        try:
            self.children = [self.start(index) for index in range(self.processes)]
            while not self.stopping:
                self.watch()
                time.sleep(POLL)
            return self.stop_all()
        finally:
            for sock in self.sockets.values():
                sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def take_over_leases(self) -> None:
        """What a previous deployment held is this deployment's now (before any child claims anything)."""
        store = open_store(self.config.store)
        try:
            resumed = store.take_over_leases()
        finally:
            store.close()
        if resumed:
            log.warning("resuming work leased by a previous process", extra={"leases": resumed})

    def start(self, index: int) -> Child:
        env = {**os.environ, MULTIPROC_ENV: self.metrics_dir, "IDHOOKS_PROCESS_INDEX": str(index)}
        env.update({name: str(sock.fileno()) for name, sock in self.sockets.items()})
        cpu = self.cpus[index] if self.cpus is not None else None
        proc = subprocess.Popen(self.argv, env=env, pass_fds=[s.fileno() for s in self.sockets.values()],
                                preexec_fn=partial(_prepare_child, cpu))
        extra: dict[str, Any] = {"index": index, "pid": proc.pid}
        if cpu is not None:
            try:  # what the child got: _prepare_child cannot say when the kernel refused
                extra["cpus"] = sorted(os.sched_getaffinity(proc.pid))
            except OSError:  # it has exited already
                pass
        log.info("started serve process", extra=extra)
        return Child(index, proc, self.clock())

    def watch(self) -> None:
        """Restart children that died, after their delay."""
        now = self.clock()
        for i, child in enumerate(self.children):
            code = child.proc.poll()
            if code is None:
                continue
            if child.restart_at is None:
                young = now - child.started < YOUNG
                child.delay = min(child.delay * 2, MAX_RESTART_DELAY) if young else RESTART_DELAY
                child.restart_at = now + child.delay
                self._forget_metrics(child.proc.pid)
                log.error("serve process exited, starting it again", extra={
                    "index": child.index, "pid": child.proc.pid, "exit_code": code, "restart_in": child.delay})
            elif now >= child.restart_at:
                replacement = self.start(child.index)
                replacement.delay = child.delay
                self.children[i] = replacement

    def stop_all(self) -> int:
        """Pass SIGTERM on and wait for every child to drain; kill what is still running after the grace."""
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = self.clock() + STOP_GRACE
        for child in self.children:
            try:
                child.proc.wait(timeout=max(0.1, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                log.error("serve process did not stop in time, killing it", extra={"pid": child.proc.pid})
                child.proc.kill()
                child.proc.wait()
        failed = [c.proc.returncode for c in self.children if c.proc.returncode not in (0, -signal.SIGTERM)]
        log.info("all serve processes stopped", extra={"failed": len(failed)})
        return 0

    def _forget_metrics(self, pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.metrics_dir)

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _on_reload(self, signum: int, frame: Any) -> None:
        log.info("reloading every serve process")
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGHUP)


def _prepare_child(cpu: int | None) -> None:
    """In the child before exec: SIGTERM (drain and exit) when the supervisor dies, even by SIGKILL, so no
    orphan keeps serving the port (Linux's PR_SET_PDEATHSIG; elsewhere a no-op). SIGHUP is ignored until
    `serve` installs its reload handler: a reload passed on while the child starts must not kill it (the
    child reads the current config as it starts anyway). Pinned to `cpu` here, before it starts any thread, so
    every thread it starts runs there too; if the kernel refuses, the child runs unpinned (the supervisor logs
    the CPUs it got)."""
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def child_argv(config_path: Path, log_json: bool) -> list[str]:
    """The command line of one child: the same `serve`, which finds its sockets in the environment."""
    argv = [sys.executable, "-m", "engine", "serve", "--config", str(config_path), "--processes", "1"]
    return argv + (["--log-json"] if log_json else [])
