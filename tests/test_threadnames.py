"""idhooks's threads carry their names where the operating system shows them (engine/threadnames.py), and the
benchmarks attribute CPU to those names (bench/procs.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.procs import per_thread_us, thread_cpu_seconds, threads_line, tree_cpu_seconds
from engine.threadnames import os_name
from tests.conftest import basic_config

ROOT = Path(__file__).resolve().parent.parent
linux_only = pytest.mark.skipif(not Path("/proc/thread-self/comm").exists(),
                                reason="thread names are written through Linux's /proc/thread-self/comm")


def test_the_os_name_drops_the_prefix_and_keeps_fifteen_printable_bytes() -> None:
    assert os_name("idhooks-processor") == "processor"
    assert os_name("delivery-lane") == "delivery-lane"
    assert os_name("sqlite-group-commit") == "sqlite-group-co"
    assert os_name("idhooks-") == "idhooks-"  # nothing after the prefix: the name as it is
    # a name made from config (a spool's destination) cannot put a line break or a non-ASCII byte into `ps`
    assert os_name("spool-drain-a\nb\u00e9\x00") == "spool-drain-a?b"
    assert len(os_name("x" * 100).encode()) == 15


PROGRAM = textwrap.dedent("""
    import json, sys, threading, time
    from engine.threadnames import name_threads

    def comm(thread):
        return open(f"/proc/self/task/{thread.native_id}/comm").read().strip()

    gate = threading.Event()
    before = threading.Thread(target=gate.wait, name="idhooks-before")
    before.start()
    name_threads("main-name")
    seen = {}
    def after():
        seen["profile"] = sys.getprofile()
        seen["comm"] = comm(threading.current_thread())
    late = threading.Thread(target=after, name="sqlite-group-commit")
    late.start(); late.join()
    print(json.dumps({"main": comm(threading.main_thread()), "before": comm(before), "after": seen["comm"],
                      "profile_left": seen["profile"] is not None,
                      "process": open("/proc/self/comm").read().strip()}))
    gate.set()
""")


@linux_only
def test_threads_running_and_started_later_are_named_and_left_unprofiled() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    names = json.loads(done.stdout)
    assert names == {"main": "main-name", "before": "before", "after": "sqlite-group-co", "profile_left": False,
                     "process": "main-name"}


@linux_only
def test_a_served_process_shows_its_stages_as_threads(tmp_path: Path, serve) -> None:
    server = serve(basic_config(tmp_path))
    pid = server.proc.pid
    names = {task.joinpath("comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()}
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "idhooks"
    assert {"processor", "sqlite-group-co", "delivery-lane", "delivery-0", "log-writer", "granian"} <= names
    assert "python" not in names and not any(name.startswith("idhooks-") for name in names)


SPIN = textwrap.dedent("""
    import threading, time
    from engine.threadnames import name_threads
    name_threads()
    def spin():
        while True:
            pass
    threading.Thread(target=spin, name="idhooks-spin", daemon=True).start()
    print("spinning", flush=True)
    time.sleep(30)
""")


@linux_only
def test_the_benchmarks_attribute_cpu_to_the_thread_that_spent_it() -> None:
    with subprocess.Popen([sys.executable, "-c", SPIN], cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "spinning"
            before = thread_cpu_seconds(proc.pid)
            time.sleep(0.6)
            after = thread_cpu_seconds(proc.pid)
        finally:
            proc.kill()
    us = per_thread_us(before, after, 1)
    assert us["spin"] > 200_000  # ~0.6 s of one core, less what the machine's other work took from it
    assert us["spin"] > 5 * us["idhooks"]  # the sleeping main thread is not charged with it
    assert threads_line(us).startswith("    by thread: spin ")


@linux_only
def test_the_readings_survive_children_that_come_and_go() -> None:
    # adnanh/webhook runs /bin/true per request: its children exit between the listing of /proc and the read
    with subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"]) as proc:
        try:
            for _ in range(300):
                assert tree_cpu_seconds(proc.pid) >= 0
                assert thread_cpu_seconds(proc.pid)["sh"] >= 0
        finally:
            proc.kill()
