"""`idhooks serve --processes N` on the default SQLite store: N real processes behind one port keep every
guarantee of a single one. Each event is stored once and delivered once, a killed child is started again and
what it held is delivered after the lease, stateful rules count exactly, SIGHUP reloads every child, SIGTERM
drains them all, and /metrics sums over the children whichever of them answers."""

from __future__ import annotations

import http.client
import os
import re
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, free_port, sample_event, signed, thread_affinities
from tests.peers import HttpPeer, http_peer  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

PROVISION = """rules:
  - id: provision
    event: login.loginFailed
    actions:
      - http: {to: target, method: POST, path: /users, json: {user: "{{ username }}"}}
"""

BRUTE_FORCE = """rules:
  - id: brute-force-user
    event: login.loginFailed
    threshold: {count: 40, within: 10m, group_by: [claims.username]}
    actions:
      - log: {message: "ALERT {{ count }} failed logins for {{ group[0] }}"}
"""


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux /proc)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def wait_until(check: Callable[[], Any], expected: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while (found := check()) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def post(base_url: str, event: dict[str, Any]) -> tuple[int, str]:
    body, headers = signed(event)
    response = requests.post(base_url + "/webhooks/asgardeo", data=body, headers=headers, timeout=30)
    return response.status_code, response.json().get("status", "")


def start(tmp_path: Path, serve: Callable[..., Any], rules: str, extra: str = "", processes: str = "2",
          watch: bool = True, args: tuple[str, ...] = ()) -> Any:
    port = free_port()
    config = basic_config(tmp_path, port=port, extra=extra)
    if not watch:  # only SIGHUP reloads
        config.write_text(config.read_text().replace("rules: {paths: [rules/]}",
                                                     "rules: {paths: [rules/], watch: false}"))
    (tmp_path / "rules" / "rules.yaml").write_text(rules)
    server = serve(config, port, args=("--processes", processes, *args))
    assert wait_until(lambda: len(children(server.proc.pid)), int(processes), 20) == int(processes), server.log()
    assert wait_until(lambda: server.log().count("idhooks serving url="), int(processes), 30) == int(processes)
    return server


def store_of(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "var" / "idhooks.db")


def job_statuses(store: SQLiteStore) -> Counter:
    return Counter(job.status for job in store.list_jobs(limit=10_000))


def test_two_processes_store_and_deliver_every_event_once(tmp_path: Path, serve: Callable[..., Any],
                                                          http_peer: HttpPeer) -> None:
    extra = f'destinations:\n  target: {{type: http, base_url: "{http_peer.url}", timeout: 30}}\n'
    server = start(tmp_path, serve, PROVISION, extra)
    events = [sample_event() for _ in range(1000)]
    sends = [(server.url, e) for e in events] + [(server.url, e) for i, e in enumerate(events) if i % 10 == 0]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda send: post(*send), sends))
    assert {code for code, _ in results} == {202}
    outcomes = [outcome for _, outcome in results]
    assert (outcomes.count("accepted"), outcomes.count("duplicate")) == (1000, 100)
    store = store_of(tmp_path)
    try:
        assert wait_until(lambda: job_statuses(store), Counter(done=1000), 120) == {"done": 1000}, server.log()
        assert store.stats().events == {"processed": 1000}
    finally:
        store.close()
    delivered = Counter(r.headers["Idempotency-Key"] for r in http_peer.requests)
    assert delivered == Counter({f"{e['jti']}:provision:0": 1 for e in events})
    metrics = requests.get(server.url + "/metrics", timeout=10).text  # any child: the sum over both
    accepted = re.search(r'idhooks_deliveries_received_total\{outcome="accepted",webhook="asgardeo"\} (\S+)',
                         metrics) or re.search(
        r'idhooks_deliveries_received_total\{webhook="asgardeo",outcome="accepted"\} (\S+)', metrics)
    assert accepted is not None and float(accepted.group(1)) == 1000, metrics


def test_a_killed_child_is_restarted_and_its_jobs_are_delivered_after_the_lease(
        tmp_path: Path, serve: Callable[..., Any], http_peer: HttpPeer) -> None:
    extra = (f'destinations:\n  target: {{type: http, base_url: "{http_peer.url}", timeout: 30}}\n'
             "delivery: {workers: 4, per_destination_concurrency: 2, lease: 5s}\n")
    server = start(tmp_path, serve, PROVISION, extra)
    store = store_of(tmp_path)
    try:
        http_peer.hold.clear()  # a slow target: the children hold the jobs they claimed
        events = [sample_event() for _ in range(20)]
        for event in events:
            assert post(server.url, event)[0] == 202
        assert wait_until(lambda: job_statuses(store), Counter(pending=20), 30) == {"pending": 20}
        assert http_peer.wait_for_arrivals(2) >= 2
        before = children(server.proc.pid)
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        http_peer.hold.set()
        restarted = wait_until(lambda: len(set(children(server.proc.pid)) - set(before)), 2, 30)
        assert restarted == 2, server.log()
        assert wait_until(lambda: job_statuses(store), Counter(done=20), 60) == {"done": 20}, server.log()
        assert time.monotonic() - killed_at >= 3  # what the dead children held waited for the end of its lease
    finally:
        store.close()
    sent = Counter(r.headers["Idempotency-Key"] for r in http_peer.requests)
    assert set(sent) == {f"{e['jti']}:provision:0" for e in events}
    assert "serve process exited, starting it again" in server.log()


def test_a_threshold_counts_exactly_across_processes(tmp_path: Path, serve: Callable[..., Any]) -> None:
    """40 failures sent at once to two processes fire a count-40 threshold exactly once: an update lost
    between the processes would leave the window at 39 and nothing would fire."""
    server = start(tmp_path, serve, BRUTE_FORCE)
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda e: post(server.url, e)[0],
                              [sample_event("login.loginFailed") for _ in range(40)]))
    assert codes == [202] * 40
    store = store_of(tmp_path)
    try:
        assert wait_until(lambda: store.stats().events, {"processed": 40}, 30) == {"processed": 40}
        messages = [job.message for job in store.list_jobs(limit=100)]
    finally:
        store.close()
    assert messages == [{"message": "ALERT 40 failed logins for jane.doe@example.com"}], server.log()


def test_sighup_reloads_every_child_and_sigterm_drains_them_all(tmp_path: Path,
                                                                 serve: Callable[..., Any]) -> None:
    server = start(tmp_path, serve, "rules: []\n", watch=False)
    pids = children(server.proc.pid)
    (tmp_path / "rules" / "rules.yaml").write_text(
        'rules:\n  - id: seen\n    event: login.loginFailed\n    actions: [{log: {message: "seen"}}]\n')
    server.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: server.log().count("reloaded config and rules"), 2, 20) == 2, server.log()
    for _ in range(10):
        assert post(server.url, sample_event("login.loginFailed"))[0] == 202
    store = store_of(tmp_path)
    try:
        assert wait_until(lambda: job_statuses(store).get("done", 0) + job_statuses(store).get("pending", 0),
                          10, 30) == 10
    finally:
        store.close()
    assert children(server.proc.pid) == pids  # a reload restarts nothing
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert not any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
                   for pid in pids)
    assert server.log().count("shutting down") == 2


def test_killing_the_supervisor_stops_its_children(tmp_path: Path, serve: Callable[..., Any]) -> None:
    server = start(tmp_path, serve, "rules: []\n")
    pids = children(server.proc.pid)
    server.kill9()
    assert wait_until(lambda: [pid for pid in pids if Path(f"/proc/{pid}").exists()], [], 30) == []


def test_processes_value_is_checked_on_the_command_line(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    config = basic_config(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--config", str(config), "--processes", "0"])
    assert exit_info.value.code == 2
    assert "expected a number of processes (1 or more) or 'auto', not '0'" in capsys.readouterr().err


def test_cpu_pinning_is_checked_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    config = basic_config(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--config", str(config), "--processes", "2", "--cpu-pinning", "cpu0\n"])
    assert exit_info.value.code == 2
    assert "argument --cpu-pinning: invalid choice: 'cpu0\\n' (choose from 'auto', 'always', 'never')" \
        in capsys.readouterr().err


def child_index(pid: int) -> int:
    """Which child of the supervisor a process is (the index it was started with)."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(entry for entry in environ if entry.startswith(b"IDHOOKS_PROCESS_INDEX=")).split(b"=")[1])


def thread_cpus(pid: int) -> set[frozenset[int]]:
    """The CPUs each thread of a process may run on (its event loop's, granian's, the writer's, ...)."""
    return set().union(*thread_affinities(pid).values())


def test_each_child_runs_on_a_cpu_of_its_own_and_a_restarted_one_gets_it_again(
        tmp_path: Path, serve: Callable[..., Any]) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    server = start(tmp_path, serve, "rules: []\n", args=("--cpu-pinning", "always"))
    assert post(server.url, sample_event())[0] == 202  # every thread has started
    expected = {index: cpus[index % len(cpus)] for index in range(2)}
    for pid in children(server.proc.pid):
        assert thread_cpus(pid) == {frozenset({expected[child_index(pid)]})}, server.log()
    assert f'serve processes pinned, each to a CPU cpu_pinning=always cpus="{[expected[0], expected[1]]}"' \
        in server.log()
    for index in range(2):
        assert re.search(rf"started serve process index={index} pid=\d+ cpus=\[{expected[index]}\]", server.log())
    first = next(pid for pid in children(server.proc.pid) if child_index(pid) == 0)
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: len([pid for pid in children(server.proc.pid) if pid != first]), 2, 30) == 2, \
        server.log()
    again = next(pid for pid in children(server.proc.pid) if child_index(pid) == 0)
    assert wait_until(lambda: thread_cpus(again), {frozenset({expected[0]})}, 10) == {frozenset({expected[0]})}


def test_children_are_left_to_the_scheduler_with_cpu_pinning_never(tmp_path: Path,
                                                                      serve: Callable[..., Any]) -> None:
    server = start(tmp_path, serve, "rules: []\n", args=("--cpu-pinning", "never"))
    assert post(server.url, sample_event())[0] == 202
    for pid in children(server.proc.pid):
        assert thread_cpus(pid) == {frozenset(os.sched_getaffinity(0))}
    assert "pinned" not in server.log()


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_new_connections_are_spread_over_the_children(tmp_path: Path, serve: Callable[..., Any]) -> None:
    """Each child listens on its own socket of the port (SO_REUSEPORT): with one shared listening socket, the
    first child's accept loop took all 16 connections of a burst and the other child idled."""
    server = start(tmp_path, serve, "rules: []\n")
    pids = children(server.proc.pid)
    before = {pid: cpu_ticks(pid) for pid in pids}

    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(16)]
    for connection in connections:  # a burst of new connections, as a hub's or a load balancer's
        connection.connect()

    def send_many(connection: http.client.HTTPConnection) -> None:
        for _ in range(40):
            body, headers = signed(sample_event())
            connection.request("POST", "/webhooks/asgardeo", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 202

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(send_many, connections))
    for connection in connections:
        connection.close()
    used = sorted(cpu_ticks(pid) - before[pid] for pid in pids)
    assert used[0] >= used[1] * 0.15, f"CPU ticks per child: {used}"  # 1 of 16 connections at the least
