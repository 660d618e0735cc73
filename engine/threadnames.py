"""idhooks's threads named where the operating system shows them: `top -H`, `ps -L`, `/proc/<pid>/task/*/comm`,
perf and py-spy list `processor`, `sqlite-group-co`, `delivery-lane`, ... instead of `python` for every one.

Why (issue 14): which stage a busy server spends its cores in is read per thread (bench/procs.py attributes a
benchmark's CPU per event to each thread this way; an operator does it with `top -H`), and Python 3.11 keeps a
thread's name to itself. Linux keeps 15 bytes of a name: the Python name without its `idhooks-` prefix (every
thread here is idhooks's), printable ASCII, cut there. The main thread, and so the process, is `idhooks`.
Where there is no `/proc/thread-self` (not Linux) nothing changes.
"""

from __future__ import annotations

import sys
import threading
from types import FrameType
from typing import Any, Callable

PREFIX = "idhooks-"
NAME_BYTES = 15
"""What Linux keeps of a thread's name (TASK_COMM_LEN, 16 with the terminating NUL)."""
_THIS_THREAD = "/proc/thread-self/comm"


def os_name(name: str) -> str:
    """The name the operating system shows for a thread Python calls `name`."""
    short = name.removeprefix(PREFIX) or name
    return "".join(char if " " <= char <= "~" else "?" for char in short)[:NAME_BYTES]


def name_threads(main: str = "idhooks") -> None:
    """Name this thread `main`, the other threads already running by their Python names, and every thread
    started through `threading` from now on as it starts.

    The last is threading.setprofile's hook, used as a thread-start hook: Python sets it in each new thread
    before the thread's run(), it is called once, on the first call in that thread, names the thread and
    removes itself, so the thread runs unprofiled as before."""
    threading.setprofile(_name_on_start)
    _write(_THIS_THREAD, main)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.native_id is not None:
            _write(f"/proc/self/task/{thread.native_id}/comm", os_name(thread.name))


def rename_current(name: str) -> Callable[[], None]:
    """Give this thread the operating-system name `name` until the returned function is called, which gives
    back the name it had. For threads that native code starts from this thread, which Python never sees: they
    take the name the thread has when they start (granian's HTTP threads, engine/receive/front.py)."""
    before = _read(_THIS_THREAD)
    _write(_THIS_THREAD, os_name(name))
    return lambda: _write(_THIS_THREAD, before) if before else None


def _name_on_start(frame: FrameType, event: str, arg: Any) -> None:
    sys.setprofile(None)
    _write(_THIS_THREAD, os_name(threading.current_thread().name))


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as comm:
            return comm.read().strip()
    except OSError:
        return ""


def _write(path: str, name: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as comm:
            comm.write(name)
    except OSError:  # not Linux, or the thread has ended meanwhile: it keeps the name it has
        pass
