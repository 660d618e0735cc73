"""`idhooks serve`: wires config, store, rules, processor, delivery worker and the HTTP app, and runs them
under granian (the async intake, engine/receive/front.py) or waitress (`server.http_server`) until
SIGTERM/SIGINT. SIGHUP reloads config.yaml and the rules; a reload with any error keeps
the last good config and rule set running and shows the errors in /readyz."""

from __future__ import annotations

import gc
import logging
import os
import resource
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import waitress

from actions import ActionSet, build_actions
from actions.base import ActionContext
from engine import cpus, logs, processes, threadnames
from engine.api.app import create_api_app, mount
from engine.api.deps import ApiDeps
from engine.api.resources import MAX_BODY_BYTES
from engine.receive import httpserver
from engine.receive.app import create_app, create_metrics_app, webhook_sink
from engine.receive.front import Front
from engine.receive.channel import use_task_flushed_channels
from engine.verify.envelope import RecentEnvelopes
from engine.config.settings import Config, ServerConfig, load_config
from engine.errors import ConfigError, IdhooksError
from engine.metrics import Metrics
from engine.match.processor import Processor
from engine.match.loader import load_for_config
from engine.match.ruleset import RuleSet
from engine.match.watch import FolderWatcher
from engine.runtime import Current
from engine.match.stateful.evaluator import StatefulRules
from engine.store import open_store, subscriptions
from engine.store.base import Store
from engine.deliver.worker import DeliveryWorker

log = logging.getLogger("idhooks.server")

PRUNE_INTERVAL = 3600.0
FILE_HEADROOM = 256  # open files besides client connections: store, logs, outbound connections
DIGEST_TICK = 10.0
"""Seconds between ticks for digests and absence timers (a timer fires at most this late)."""

RESTART_SETTINGS = {"server": ("host", "port", "threads", "log_format", "http_server", "connection_limit",
                               "channel_timeout",
                               "cleanup_interval", "max_request_header_size", "max_buffered_bytes", "trusted_proxy",
                               "processes"),
                    "store": ("url", "group", "dedup_window", "spool_dir", "ca_file", "cert_file", "key_file",
                              "password"),
                    "quarantine": ("max_entries", "max_bytes"),
                    "metrics": ("listen", "token"),
                    "api": ("listen",)}
"""Settings a reload cannot apply (the listening sockets, the open store, the intake's limits); every other
setting, the rules and the destinations apply at once."""


def settings_needing_restart(before: Config, after: Config) -> list[str]:
    """The dotted names of RESTART_SETTINGS that differ between two configs."""
    return [f"{section}.{name}" for section, names in RESTART_SETTINGS.items() for name in names
            if getattr(getattr(before, section), name) != getattr(getattr(after, section), name)]


class Service:
    """Everything `idhooks serve` runs, with start/stop and reload; testable without waitress."""

    def __init__(self, config: Config, store: Store, *, clock=time.time) -> None:
        self.config = Current(config)
        self.store = store
        self.clock = clock
        self.metrics = Metrics()
        self.rules = Current(self.stateful(self.load_rules(config)))
        self.rules_loaded_at = clock()
        self.reload_errors: list[str] = []
        self.metrics.reloads.labels("success").inc()
        self.metrics.last_reload.set(self.rules_loaded_at)
        self.actions = Current(self.load_actions(config))
        self.worker = DeliveryWorker(store, self.actions, config.delivery, self.metrics, clock=clock)
        recent = RecentEnvelopes()
        self.processor = Processor(store, self.rules, metrics=self.metrics, clock=clock,
                                   on_jobs=self.worker.notify, recent=recent)
        self.sink = webhook_sink(self.config, store, metrics=self.metrics, clock=clock,
                                 on_accepted=self.processor.notify, recent=recent)
        self.app = create_app(self.config, store, metrics=self.metrics, clock=clock,
                              readiness=self.readiness, sink=self.sink)
        self.api = ApiDeps(self.config, store, self.rules, self.readiness, self.metrics, clock)
        if config.api.listen is None:  # otherwise only the separate API listener serves it
            mount(self.app, self.api)
        self._stop = threading.Event()
        self.watcher = FolderWatcher(config.rules.paths, config.rules.watch_interval, self.reload)

    @staticmethod
    def load_rules(config: Config) -> RuleSet:
        return load_for_config(config)

    def stateful(self, ruleset: RuleSet) -> StatefulRules:
        """The rule set with the store's state for thresholds, suppression and digests."""
        return StatefulRules(ruleset, self.store, clock=self.clock,
                             on_capped=lambda rule_id: self.metrics.stateful_capped.labels(rule_id).inc(),
                             on_bounded=lambda rule_id, bound: self.metrics.state_capped.labels(rule_id, bound).inc(),
                             on_shadowed=lambda d: self.metrics.actions_shadowed.labels(d.rule_id).inc(len(d.actions)))

    @staticmethod
    def load_actions(config: Config) -> ActionSet:
        """One action per destination, validated before anything is served or a reload is accepted."""
        return build_actions(config.destinations, ActionContext(source=str(config.path)))

    def readiness(self) -> dict[str, Any]:
        return {"loaded": True, "count": len(self.rules.get().rules),
                "loaded_at": self.rules_loaded_at, "errors": self.reload_errors}

    def reload(self) -> bool:
        """Reload config.yaml and the rules together; keep the running ones on any error."""
        try:
            config = load_config(self.config.get().path)
            rules = self.load_rules(config)
            actions = self.load_actions(config)
        except ConfigError as exc:
            self.reload_errors = exc.problems
            self.metrics.reloads.labels("failure").inc()
            for problem in exc.problems:
                log.error("reload failed, keeping the running config and rules", extra={"problem": problem})
            return False
        previous = self.config.get()
        self.config.set(config)
        self.rules.set(self.stateful(rules))
        self.actions.set(actions)
        if config.delivery != previous.delivery:
            self.worker.apply(config.delivery)
            log.info("delivery settings changed", extra={"workers": config.delivery.workers,
                                                         "lease": config.delivery.lease})
        for setting in settings_needing_restart(previous, config):
            log.warning("changed setting takes effect at the next restart", extra={"setting": setting})
        self.rules_loaded_at = self.clock()
        self.reload_errors = []
        self.metrics.reloads.labels("success").inc()
        self.metrics.last_reload.set(self.rules_loaded_at)
        log.info("reloaded config and rules", extra={"rules": len(rules.rules)})
        return True

    def _prune_loop(self) -> None:
        while not self._stop.wait(PRUNE_INTERVAL):
            self.prune()

    def _tick_loop(self) -> None:
        while not self._stop.wait(DIGEST_TICK):
            self.tick()

    def tick(self) -> None:
        """Send the digests whose period is over and fire expired absence timers (every process ticks:
        timers are claimed by one process each, and job keys make every firing once)."""
        try:
            if self.rules.get().tick(self.clock()):
                self.processor.on_jobs()
        except IdhooksError as exc:
            log.error("digest and timer tick failed", extra={"error": str(exc)})

    def prune(self) -> None:
        cfg = self.config.get().store
        try:
            removed = self.store.prune(self.clock(), cfg.retention, cfg.dedup_window)
            if removed:
                log.info("pruned events past retention", extra={"removed": removed})
            self.store.prune_state(self.clock())
            forgotten = subscriptions.prune(self.store, self.clock(), cfg.retention)
            if forgotten:
                log.info("pruned subscription records past retention", extra={"removed": forgotten})
        except IdhooksError as exc:
            log.error("prune failed", extra={"error": str(exc)})

    def start(self, take_over_leases: bool = True) -> None:
        """Start the background work. A child of `--processes N` does not take over leases: its siblings hold
        live ones (the supervisor took over a previous deployment's before starting them)."""
        resumed = self.store.take_over_leases() if take_over_leases else 0
        if resumed:
            log.warning("resuming work leased by a previous process", extra={"leases": resumed})
        self.processor.start()
        self.store.on_new_jobs(self.worker.notify)  # other processes' new jobs wake this one's workers
        self.worker.start()
        if self.config.get().rules.watch:
            self.watcher.start()
        self.prune()
        threading.Thread(target=self._prune_loop, name="idhooks-prune", daemon=True).start()
        threading.Thread(target=self._tick_loop, name="idhooks-digests", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.watcher.stop()
        self.processor.stop()
        if not self.worker.stop():
            log.warning("sends still running at shutdown stay leased and are delivered after the restart")
        self.store.close()


def client_limits(server: ServerConfig) -> dict[str, Any]:
    """waitress's limits on idle and slow clients and its trusted proxy (docs/configuration.md, server), for
    every listener: the main port, `metrics.listen` and `api.listen` (whose wrong tokens count per client).
    poll() instead of select(), which cannot watch more than 1024 sockets."""
    limits = {"connection_limit": server.connection_limit, "channel_timeout": server.channel_timeout,
              "cleanup_interval": server.cleanup_interval, "max_request_header_size": server.max_request_header_size,
              "asyncore_use_poll": True, "clear_untrusted_proxy_headers": True}
    if server.trusted_proxy:  # the client address (kept with quarantined deliveries) comes from X-Forwarded-For
        limits.update(trusted_proxy=server.trusted_proxy, trusted_proxy_headers={"x-forwarded-for"},
                      trusted_proxy_count=1)
    return limits


def allow_open_files(connections: int) -> None:
    """Raise the soft limit on open files towards the hard one so that `connections` sockets fit (plus the
    store's files and outbound connections); warn when they cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FILE_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning("server.connection_limit needs more open files than this process may have",
                    extra={"connection_limit": connections, "open_files_limit": soft})


def listen_on(host: str, port: int, inherited_env: str) -> dict[str, Any]:
    """waitress's listening arguments: the socket inherited from the supervisor, or host and port."""
    sock = processes.inherited_socket(inherited_env)
    return {"sockets": [sock]} if sock is not None else {"host": host, "port": port}


GC_YOUNG_THRESHOLD = 20_000
"""Allocations between two collections of the youngest generation once serving (CPython's default: 700)."""


def settle_garbage_collector() -> None:
    """Once started: move what startup made (modules, configuration, compiled rules, connections) out of the cyclic
    collector's reach (gc.freeze) and collect the youngest generation every GC_YOUNG_THRESHOLD allocations instead
    of every 700. Serving one event allocates a few hundred objects, so the default ran a collection every few
    events, and each older-generation pass walked everything startup had made (issue 14: ingest 195 -> 187 µs of
    CPU per event over 10 interleaved rounds). Cycles are still collected, in larger batches."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)


def serve(config_path: Path, host: str | None, port: int | None, log_json: bool = False,
          process_count: int | str | None = None, cpu_pinning: str | None = None) -> int:
    """Run `idhooks serve`: in this process, or (`process_count` or `server.processes` above 1) as the
    supervisor of that many processes sharing the port (engine/processes.py), each on a CPU of its own as
    `cpu_pinning` or `server.cpu_pinning` says."""
    threadnames.name_threads()
    config = load_config(config_path)
    server_cfg = replace(config.server, host=host or config.server.host,
                         port=port if port is not None else config.server.port,
                         cpu_pinning=cpu_pinning or config.server.cpu_pinning)
    config = replace(config, server=server_cfg)
    logs.configure("json" if log_json else config.server.log_format, interval=logs.FLUSH_INTERVAL)
    count = processes.resolve_processes(process_count if process_count is not None else server_cfg.processes)
    if count > 1 and not processes.is_child():
        return processes.Supervisor(config, processes.child_argv(config_path, log_json), count).run()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is N" under load is noise
    service = Service(config, open_store(config.store))
    service.start(take_over_leases=not processes.is_child())
    allow_open_files(server_cfg.connection_limit)
    run: Callable[[], object]
    close: Callable[[], object]
    split: tuple[set[int], set[int]] | None = None  # the Python threads' CPU and granian's (granian only)
    if server_cfg.http_server == "waitress":
        server = use_task_flushed_channels(waitress.create_server(
            service.app, threads=server_cfg.threads, ident="idhooks", max_request_body_size=server_cfg.max_body_bytes,
            **listen_on(server_cfg.host, server_cfg.port, processes.LISTEN_FD_ENV),
            **client_limits(server_cfg)))
        run, close, port = server.run, server.close, server.effective_port

        def terminate(signum: int, frame: Any) -> None:
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, terminate)  # granian's event loop takes SIGTERM and SIGHUP itself
        signal.signal(signal.SIGHUP, lambda signum, frame: threading.Thread(target=service.reload, daemon=True).start())
    else:
        sock = processes.listening_socket(processes.LISTEN_FD_ENV, server_cfg.host, server_cfg.port)
        # a child of --processes N is pinned whole, or not at all, by its supervisor
        split = None if processes.is_child() else cpus.split_cpus(server_cfg.cpu_pinning, os.sched_getaffinity(0))
        front = Front(service.sink, service.app, service.config,
                      bridge_limit=max(server_cfg.max_body_bytes, MAX_BODY_BYTES),
                      granian_cpus=split[1] if split is not None else None)
        run, close, port = (lambda: httpserver.serve(front, sock, server_cfg, service.reload)), front.close, \
            sock.getsockname()[1]

    metrics_cfg = config.metrics
    if metrics_cfg.listen is not None:
        metrics_server = use_task_flushed_channels(waitress.create_server(create_metrics_app(service.metrics, metrics_cfg.token),
                                                threads=2, ident="idhooks-metrics",
                                                **listen_on(*metrics_cfg.listen, processes.METRICS_FD_ENV),
                                                **client_limits(server_cfg)))
        threading.Thread(target=metrics_server.run, name="idhooks-metrics", daemon=True).start()
        log.info("metrics served separately", extra={"listen": f"{metrics_cfg.listen[0]}:{metrics_cfg.listen[1]}"})

    api_cfg = config.api
    if api_cfg.listen is not None:
        api_server = use_task_flushed_channels(waitress.create_server(create_api_app(service.api), threads=4, ident="idhooks-api",
                                            max_request_body_size=MAX_BODY_BYTES,
                                            **listen_on(*api_cfg.listen, processes.API_FD_ENV),
                                            **client_limits(server_cfg)))
        threading.Thread(target=api_server.run, name="idhooks-api", daemon=True).start()
        log.info("API and console served separately", extra={"listen": f"{api_cfg.listen[0]}:{api_cfg.listen[1]}"})

    log.info("idhooks serving", extra={"url": f"http://{server_cfg.host}:{port}", "http_server": server_cfg.http_server,
                                       "store": service.store.url,  # password-free (RedisStore redacts it)
                                       "webhooks": [w.path for w in config.webhooks]})
    if split is not None:
        cpus.pin_threads(split[0])  # every thread running now; those started later inherit it
        log.info("threads pinned: the Python threads to one CPU, granian's to the others",
                 extra={"cpu_pinning": server_cfg.cpu_pinning, "python_cpus": sorted(split[0]),
                        "granian_cpus": sorted(split[1])})
    settle_garbage_collector()
    try:
        run()
    finally:
        log.info("shutting down")
        close()
        service.stop()
        logs.flush()
    return 0
