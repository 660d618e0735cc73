"""How many CPUs this process may use: what `--processes auto` starts one process for.

Two limits apply on Linux, and a container usually sets the second one only: the CPUs the process may run on
(its affinity: `taskset`, a cpuset) and the CPU time its control group may spend (its quota: `docker --cpus`,
Kubernetes `limits.cpu`, systemd `CPUQuota=`). A container limited to 2 CPUs on a 32-core host sees 32 in its
affinity; 32 GIL-bound processes would then take turns on 2 CPUs' worth of time, each throttled for most of every
period. So the quota counts too, rounded up (1.5 CPUs: 2 processes), as the JVM and Go's runtime do.

The quota is read from the cgroup files the kernel exposes: cgroup v2 `cpu.max` ("200000 100000", or "max
100000" for none), cgroup v1 `cpu.cfs_quota_us` over `cpu.cfs_period_us` (-1 for none), on the process's own
cgroup and every parent up to the mount's root (a parent's limit binds its children too); the smallest wins.
Where the cgroup is mounted, and as which path, comes from `/proc/self/mountinfo` and `/proc/self/cgroup`, so a
container with or without its own cgroup namespace is read right. A file that is missing or does not say a
number is no limit: a quota never raises the count above the affinity, and nothing here can stop `serve`.

`server.cpu_pinning` (auto | always | never) keeps threads that hand work to each other on the same core:
`pinned_cpus` says on which CPU each of `serve --processes N`'s children runs, `split_cpus` which CPU a single
process's Python threads share and which ones granian's threads get, and `pin_threads` and `pin_current`
apply it.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Callable, Iterable

PROC_SELF = Path("/proc/self")
_OCTAL = re.compile(r"\\([0-7]{3})")


def cpu_limits(proc_self: Path = PROC_SELF) -> tuple[int, float | None]:
    """(the CPUs in this process's affinity, its cgroups' CPU quota or None)."""
    return len(os.sched_getaffinity(0)), cpu_quota(proc_self)


def usable_cpus(affinity: int, quota: float | None) -> int:
    """The CPUs a process may use: its affinity, lowered to its CPU quota rounded up; at least 1."""
    return max(1, affinity if quota is None else min(affinity, math.ceil(quota)))


PIN_MODES = ("auto", "always", "never")
"""`server.cpu_pinning`: with several processes, each child on a CPU of its own when there is one CPU per child
(auto) or always (children beyond the CPUs share them in turn); a single process's Python threads on one CPU and
granian's on the others (auto and always); never."""


def pinned_cpus(mode: str, processes: int, affinity: Iterable[int]) -> list[int] | None:
    """The CPU each of `processes` children runs on (by the child's index), or None to leave them all to the
    scheduler; `affinity` is the CPUs the supervisor may use.

    Why pin: each child is one GIL, whose threads (the event loop, granian's, the group commit, the processor)
    hand the GIL and their events to each other many times per event. Left to the scheduler, those threads
    spread over every core and wake each other across cores, and two children's threads mix on each core;
    pinned, each child's threads take turns on a core of their own (issue 14: `--processes auto` on 2 cores
    under wrk, three interleaved runs: +3 / +15 / +14 % events/s).
    `auto` pins only when the children are exactly as many as the CPUs: fewer children leave cores that a
    pinned thread could not use, and a count from a CPU quota (engine/cpus.py) is time, not cores. A single
    process is not pinned whole (granian's threads would lose the other cores: +23 % CPU per event) but split,
    below."""
    cpus = sorted(affinity)
    if processes < 2 or not cpus or mode == "never" or (mode == "auto" and processes != len(cpus)):
        return None
    return [cpus[index % len(cpus)] for index in range(processes)]


def split_cpus(mode: str, affinity: Iterable[int]) -> tuple[set[int], set[int]] | None:
    """For a single process under granian: (the CPU its Python threads share, the CPUs of granian's threads), or
    None to leave every thread to the scheduler (`never`, or a single CPU).

    Why: the Python threads (the event loop, the group commit, the processor, the delivery lane, ...) take turns
    on the GIL, so two cores never ran them at once; what two cores did is wake each other across them at every
    hand-off of the GIL and of an event. On one core those hand-offs are a switch between threads of one
    process; granian's threads, which parse and answer HTTP without the GIL, keep the other cores (issue 14,
    one process under wrk, 3 interleaved rounds against `never`: with a rule and an `http` action 595 -> 463 µs
    of CPU per delivered event, 1,699 -> 2,180 events/s (medians); ingest alone 296 -> 267 µs; better in every
    round)."""
    cpus = sorted(affinity)
    if mode == "never" or len(cpus) < 2:
        return None
    return {cpus[0]}, set(cpus[1:])


def pin_threads(cpus: set[int], tasks: Path = PROC_SELF / "task") -> int:
    """Pin every thread this process runs now to `cpus`; the threads they start later inherit it. How many were
    pinned (a thread that ended meanwhile, or that the kernel would not move, is passed over)."""
    pinned = 0
    try:
        found = [int(task.name) for task in tasks.iterdir() if task.name.isdigit()]
    except OSError:
        return 0
    for tid in found:
        try:
            os.sched_setaffinity(tid, cpus)
            pinned += 1
        except OSError:
            pass
    return pinned


def pin_current(cpus: set[int]) -> Callable[[], None]:
    """Run this thread on `cpus` until the returned function is called, which gives back the CPUs it had. For
    threads that native code starts from this thread: they take its CPUs when they start (granian's HTTP threads,
    engine/receive/front.py; as threadnames.rename_current does for their name). If the kernel refuses, nothing
    changes."""
    own = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, cpus)
    except OSError:
        return lambda: None
    return lambda: os.sched_setaffinity(0, own)


def cpu_quota(proc_self: Path = PROC_SELF) -> float | None:
    """The CPUs' worth of time per period this process's cgroups allow (1.5 = one and a half CPUs), the smallest
    over cgroup v2 and v1 and up the hierarchy; None when none is set or none can be read."""
    try:
        memberships = (proc_self / "cgroup").read_text().splitlines()
        mounts = (proc_self / "mountinfo").read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for hierarchy, controllers, path in _memberships(memberships):
        v2 = hierarchy == "0" and controllers == ""
        if not v2 and "cpu" not in controllers.split(","):
            continue
        for root, mount_point in _cgroup_mounts(mounts, v2):
            directory = _directory(mount_point, root, path)
            if directory is not None:
                limits += _limits_up_to(directory, mount_point, v2)
    return min(limits, default=None)


def _memberships(lines: list[str]) -> list[tuple[str, str, str]]:
    """(hierarchy id, controllers, cgroup path) of each line of /proc/self/cgroup."""
    found = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            found.append((parts[0], parts[1], parts[2]))
    return found


def _cgroup_mounts(lines: list[str], v2: bool) -> list[tuple[str, Path]]:
    """(root within the hierarchy, mount point) of each cgroup2 mount (`v2`), or of each cgroup v1 mount that
    carries the cpu controller, from /proc/self/mountinfo ("... root mount-point options ... - type source
    super-options")."""
    found = []
    for line in lines:
        before, separator, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not separator or len(fields) < 5 or len(tail) < 3:
            continue
        kind, options = tail[0], tail[2].split(",")
        if (v2 and kind == "cgroup2") or (not v2 and kind == "cgroup" and "cpu" in options):
            found.append((_unescape(fields[3]), Path(_unescape(fields[4]))))
    return found


def _unescape(field: str) -> str:
    r"""mountinfo writes a space, tab, newline or backslash in a path as an octal escape (\040)."""
    return _OCTAL.sub(lambda found: chr(int(found[1], 8)), field)


def _directory(mount_point: Path, root: str, path: str) -> Path | None:
    """The folder of cgroup `path` under a mount of the hierarchy's `root`; None when the path is not below that
    root (the mount does not show this cgroup) or would leave the mount point."""
    relative = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
    if relative == ".." or relative.startswith("../") or os.path.isabs(relative):
        return None
    directory = Path(os.path.normpath(mount_point / relative))
    if directory != mount_point and mount_point not in directory.parents:
        return None
    return directory


def _limits_up_to(directory: Path, mount_point: Path, v2: bool) -> list[float]:
    """The quota of `directory` and of each parent up to and including `mount_point`, where one is set."""
    limits = []
    current = directory
    while True:
        quota = _v2_quota(current) if v2 else _v1_quota(current)
        if quota is not None:
            limits.append(quota)
        if current == mount_point or current.parent == current:
            return limits
        current = current.parent


def _v2_quota(directory: Path) -> float | None:
    words = _read(directory / "cpu.max").split()
    if len(words) != 2 or words[0] == "max":
        return None
    return _ratio(words[0], words[1])


def _v1_quota(directory: Path) -> float | None:
    return _ratio(_read(directory / "cpu.cfs_quota_us").strip(), _read(directory / "cpu.cfs_period_us").strip())


def _ratio(quota: str, period: str) -> float | None:
    """quota / period when both are positive whole numbers (v1 writes -1 for no quota)."""
    if not (quota.isascii() and quota.isdigit() and period.isascii() and period.isdigit()):
        return None
    numerator, denominator = int(quota), int(period)
    if numerator <= 0 or denominator <= 0:
        return None
    return numerator / denominator


def _read(path: Path) -> str:
    try:
        return path.read_text()[:64]
    except (OSError, UnicodeDecodeError):
        return ""
