"""`--processes auto` counts the CPUs this process may use: its affinity and its cgroup's CPU quota
(engine/cpus.py). Read from files laid out as the kernel lays them out, and from a real cgroup where this machine
lets the tests make one. `server.cpu_pinning` keeps a single process's Python threads on one CPU and granian's
on the others, seen on a real server's threads (the children of `--processes N`: tests/test_processes.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import requests

from engine.cpus import cpu_limits, cpu_quota, pin_threads, pinned_cpus, split_cpus, usable_cpus
from tests.conftest import basic_config, thread_affinities

ROOT = Path(__file__).resolve().parent.parent
AFFINITY = len(os.sched_getaffinity(0))


def layout(tmp_path: Path, cgroup: str, mountinfo: str, files: dict[str, str]) -> Path:
    """A /proc/self with `cgroup` and `mountinfo`, and cgroup files at the paths given (relative to tmp_path)."""
    proc_self = tmp_path / "proc-self"
    proc_self.mkdir()
    (proc_self / "cgroup").write_text(cgroup)
    (proc_self / "mountinfo").write_text(mountinfo.replace("TMP", str(tmp_path)))
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return proc_self


V2_MOUNT = "30 23 0:26 / TMP/cg rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNT = ("31 23 0:27 / TMP/cg/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
            "32 23 0:28 / TMP/cg/cpu,cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct\n")


@pytest.mark.parametrize("affinity, quota, usable", [(32, 1.5, 2), (32, 2.0, 2), (2, 0.3, 1), (4, None, 4),
                                                      (2, 8.0, 2), (1, 0.01, 1)])
def test_the_quota_lowers_the_affinity_rounded_up(affinity: int, quota: float | None, usable: int) -> None:
    assert usable_cpus(affinity, quota) == usable


@pytest.mark.parametrize("mode, processes, affinity, cpus", [
    ("auto", 2, [0, 1], [0, 1]),            # one CPU per child: each its own
    ("auto", 2, {7, 3}, [3, 7]),            # the CPUs this process may use, in order, whatever their numbers
    ("auto", 2, [0, 1, 2, 3], None),        # fewer children than CPUs: a pinned child could not use the rest
    ("auto", 3, [0, 1], None),              # more children than CPUs
    ("auto", 1, [0], None),                 # a single process is never pinned
    ("always", 3, [0, 1], [0, 1, 0]),       # children beyond the CPUs share them in turn
    ("always", 2, [0, 1, 2, 3], [0, 1]),
    ("always", 1, [0, 1], None),
    ("never", 2, [0, 1], None),
    ("always", 2, [], None),                # no CPU known: nothing to pin to
])
def test_children_are_pinned_one_per_cpu_only_when_the_mode_says(mode: str, processes: int, affinity: list[int],
                                                                  cpus: list[int] | None) -> None:
    assert pinned_cpus(mode, processes, affinity) == cpus


@pytest.mark.parametrize("mode, affinity, split", [
    ("auto", [0, 1], ({0}, {1})),
    ("always", {3, 1, 2}, ({1}, {2, 3})),   # the first CPU for Python, the rest for granian
    ("auto", [5], None),                    # one CPU: nothing to split
    ("never", [0, 1], None),
])
def test_a_single_process_keeps_its_python_threads_on_one_cpu(mode: str, affinity: list[int],
                                                              split: tuple[set[int], set[int]] | None) -> None:
    assert split_cpus(mode, affinity) == split


def test_pin_threads_passes_over_threads_that_are_gone_and_names_that_are_not_threads(tmp_path: Path) -> None:
    tasks = tmp_path / "task"
    for name in ("999999999", "not-a-thread", "..a"):
        (tasks / name).mkdir(parents=True)
    assert pin_threads({min(os.sched_getaffinity(0))}, tasks) == 0
    assert pin_threads({0}, tmp_path / "missing") == 0


PIN_PROGRAM = """
import json, os, threading, time
from engine.cpus import pin_threads
first = min(os.sched_getaffinity(0))
before = threading.Thread(target=time.sleep, args=(5,), daemon=True)
before.start()
count = pin_threads({first})
later = {}
after = threading.Thread(target=lambda: later.update(cpus=sorted(os.sched_getaffinity(0))), daemon=True)
after.start()
after.join()
tasks = {int(t): sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
print(json.dumps({"count": count, "first": first, "tasks": sorted(tasks.values()), "later": later["cpus"]}))
"""


def test_pin_threads_pins_running_threads_and_those_they_start() -> None:
    done = subprocess.run([sys.executable, "-c", PIN_PROGRAM], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["count"] == 2  # the main thread and the sleeping one
    assert {tuple(cpus) for cpus in found["tasks"]} == {(found["first"],)} and len(found["tasks"]) >= 2
    assert found["later"] == [found["first"]]


@pytest.mark.parametrize("pinning", ["auto", "never"])
def test_a_served_process_runs_its_python_threads_on_one_cpu_and_granian_on_the_others(
        tmp_path: Path, serve, pinning: str) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    server = serve(basic_config(tmp_path), args=("--cpu-pinning", pinning))
    requests.get(server.url + "/healthz", timeout=10)  # the bridge's first pool thread has started
    found = thread_affinities(server.proc.pid)
    granian, python = found.pop("granian"), set().union(*found.values())
    if pinning == "never" or len(cpus) < 2:
        assert granian == python == {frozenset(cpus)}
        assert "threads pinned" not in server.log()
    else:
        assert granian == {frozenset(cpus[1:])}, found
        assert python == {frozenset(cpus[:1])}, found  # the event loop, the writer, the processor, http_0, ...
        assert {"idhooks", "processor", "sqlite-group-co", "delivery-lane", "log-writer", "http_0"} <= set(found)
        assert (f"threads pinned: the Python threads to one CPU, granian's to the others cpu_pinning=auto "
                f"python_cpus=[{cpus[0]}]") in server.log()


def test_waitress_threads_are_left_to_the_scheduler(tmp_path: Path, serve) -> None:
    config = basic_config(tmp_path)
    config.write_text(config.read_text().replace("server: {", "server: {http_server: waitress, ", 1))
    server = serve(config)
    assert set().union(*thread_affinities(server.proc.pid).values()) == {frozenset(os.sched_getaffinity(0))}
    assert "threads pinned" not in server.log()


def test_a_cgroup_v2_quota_is_read_and_rounded_up(tmp_path: Path) -> None:
    proc_self = layout(tmp_path, "0::/system.slice/idhooks.service\n", V2_MOUNT,
                       {"cg/system.slice/idhooks.service/cpu.max": "150000 100000\n",
                        "cg/system.slice/cpu.max": "max 100000\n"})
    assert cpu_quota(proc_self) == 1.5
    assert usable_cpus(*cpu_limits(proc_self)) == min(AFFINITY, 2)


def test_a_parent_cgroups_smaller_quota_binds(tmp_path: Path) -> None:
    proc_self = layout(tmp_path, "0::/kubepods/pod1/app\n", V2_MOUNT,
                       {"cg/kubepods/pod1/app/cpu.max": "max 100000\n",
                        "cg/kubepods/pod1/cpu.max": "50000 100000\n",
                        "cg/kubepods/cpu.max": "800000 100000\n"})
    assert cpu_quota(proc_self) == 0.5
    assert usable_cpus(*cpu_limits(proc_self)) == 1


def test_no_quota_leaves_the_affinity(tmp_path: Path) -> None:
    proc_self = layout(tmp_path, "0::/\n", V2_MOUNT, {"cg/cpu.max": "max 100000\n"})
    assert cpu_quota(proc_self) is None
    assert usable_cpus(*cpu_limits(proc_self)) == AFFINITY


def test_cgroup_v1_cfs_quota_including_a_container_without_its_own_namespace(tmp_path: Path) -> None:
    # docker on cgroup v1 without a cgroup namespace: the container sees its cgroup's path from the host, and its
    # cpu hierarchy mounted with that path as the mount's root
    mount = V1_MOUNT.replace("32 23 0:28 / ", "32 23 0:28 /docker/0123abcd ")
    proc_self = layout(tmp_path, "12:memory:/docker/0123abcd\n4:cpu,cpuacct:/docker/0123abcd\n0::/\n", mount,
                       {"cg/cpu,cpuacct/cpu.cfs_quota_us": "250000\n", "cg/cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert cpu_quota(proc_self) == 2.5


def test_cgroup_v1_without_quota(tmp_path: Path) -> None:
    proc_self = layout(tmp_path, "4:cpu,cpuacct:/user.slice\n", V1_MOUNT,
                       {"cg/cpu,cpuacct/user.slice/cpu.cfs_quota_us": "-1\n",
                        "cg/cpu,cpuacct/user.slice/cpu.cfs_period_us": "100000\n"})
    assert cpu_quota(proc_self) is None


@pytest.mark.parametrize("written, folder", [("c\\040g", "c g"), ("c\u00e9\\134g", "c\u00e9\\g")])
def test_a_mount_point_with_a_space_or_backslash_is_unescaped(tmp_path: Path, written: str, folder: str) -> None:
    mount = V2_MOUNT.replace("TMP/cg ", f"TMP/{written} ")
    proc_self = layout(tmp_path, "0::/a\n", mount, {f"{folder}/a/cpu.max": "100000 100000\n"})
    assert cpu_quota(proc_self) == 1.0


def test_a_cgroup_whose_name_begins_with_two_dots_is_read(tmp_path: Path) -> None:
    proc_self = layout(tmp_path, "0::/..app\n", V2_MOUNT, {"cg/..app/cpu.max": "200000 100000\n"})
    assert cpu_quota(proc_self) == 2.0


@pytest.mark.parametrize("cpu_max", ["", "garbage", "100000", "-5 100000", "100000 0", "1e9 100000",
                                     "\u0661\u0662 100000", "100000 100000 100000", "\x00" * 10_000])
def test_a_file_that_does_not_say_a_number_is_no_limit(tmp_path: Path, cpu_max: str) -> None:
    proc_self = layout(tmp_path, "0::/a\n", V2_MOUNT, {"a-placeholder": "", "cg/a/cpu.max": cpu_max})
    assert cpu_quota(proc_self) is None
    assert usable_cpus(*cpu_limits(proc_self)) == AFFINITY


@pytest.mark.parametrize("path", ["/../../outside", "/a/../../../outside", "../outside"])
def test_a_cgroup_path_cannot_lead_out_of_the_mount(tmp_path: Path, path: str) -> None:
    proc_self = layout(tmp_path, f"0::{path}\n", V2_MOUNT, {"outside/cpu.max": "10000 100000\n",
                                                             "cg/cpu.max": "max 100000\n"})
    assert cpu_quota(proc_self) is None


@pytest.mark.parametrize("cgroup, mountinfo", [
    ("", ""), ("no colons here\n", V2_MOUNT), ("0::/a\n", "short line\n"), ("0::/a\n", "1 2 3 4 5 - cgroup2\n"),
    ("0::/a\n", "30 23 0:26 / /nonexistent rw - cgroup2 cgroup2 rw\n"),
])
def test_unreadable_or_odd_proc_files_are_no_limit(tmp_path: Path, cgroup: str, mountinfo: str) -> None:
    proc_self = layout(tmp_path, cgroup, mountinfo, {})
    assert cpu_quota(proc_self) is None


def test_without_proc_files_the_affinity_counts(tmp_path: Path) -> None:
    assert cpu_quota(tmp_path / "missing") is None
    assert usable_cpus(*cpu_limits(tmp_path / "missing")) == AFFINITY


# -- a real cgroup -------------------------------------------------------------------------------------------


def writable_cpu_cgroup() -> tuple[Path, str, str]:
    """(folder to make a child cgroup in, quota file, how to write a quota) on this machine, or skip."""
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists() and os.access(v1, os.W_OK):
        return v1, "cpu.cfs_quota_us", "{quota}"
    v2 = Path("/sys/fs/cgroup")
    control = v2 / "cgroup.subtree_control"
    if control.exists() and "cpu" in control.read_text().split() and os.access(v2, os.W_OK):
        return v2, "cpu.max", "{quota} 100000"
    pytest.skip("no cgroup with the cpu controller that this user may create children in (root on Linux)")


def auto_in_cgroup(tmp_cgroups: list[Path], quota: int, nested: bool = False) -> str:
    parent, quota_file, form = writable_cpu_cgroup()
    group = parent / f"idhooks-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    tmp_cgroups.append(group)
    (group / quota_file).write_text(form.format(quota=quota))
    member = group
    if nested:  # no quota of its own: the parent's binds it
        member = group / "inner"
        member.mkdir()
        tmp_cgroups.insert(0, member)
    program = ("from engine import logs; logs.configure()\n"
               "from engine.processes import resolve_processes; print(resolve_processes('auto'))")
    done = subprocess.run(["sh", "-c", f'echo $$ > "{member}/cgroup.procs" && exec "$0" -c "$1"', sys.executable,
                           program], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert f"processes: auto processes={done.stdout.strip()} cpu_affinity={AFFINITY} cpu_quota=" in done.stderr
    return done.stdout.strip()


@pytest.fixture
def tmp_cgroups() -> Iterator[list[Path]]:
    made: list[Path] = []
    yield made
    for group in made:  # innermost first; a cgroup can be removed once its processes have exited
        group.rmdir()


def test_auto_in_a_real_cgroup_limited_to_half_a_cpu_is_one_process(tmp_cgroups: list[Path]) -> None:
    assert auto_in_cgroup(tmp_cgroups, 50_000) == "1"


def test_auto_says_what_it_counted(tmp_path: Path) -> None:
    program = ("from engine import logs; logs.configure()\n"
               "from engine.processes import resolve_processes; print(resolve_processes('auto'))")
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "processes: auto" in line]
    assert f"processes={done.stdout.strip()} cpu_affinity={AFFINITY} cpu_quota=" in line
    # a child of the supervisor does not say it again
    child = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=30,
                           env={**os.environ, "IDHOOKS_LISTEN_FD": "99"})
    assert child.returncode == 0, child.stderr
    assert "processes: auto" not in child.stderr


def test_auto_under_a_limited_parent_cgroup_is_bound_by_it(tmp_cgroups: list[Path]) -> None:
    assert auto_in_cgroup(tmp_cgroups, 50_000, nested=True) == "1"


def test_auto_in_a_real_cgroup_with_more_quota_than_cores_is_the_cores(tmp_cgroups: list[Path]) -> None:
    assert auto_in_cgroup(tmp_cgroups, 100_000 * (AFFINITY + 3)) == str(AFFINITY)
