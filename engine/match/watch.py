"""A polling watcher for rule folders: calls `on_change()` when anything under the watched paths changes.

Polling (not inotify) because it sees every way people and tools change rules the same way, on every
platform and on network or container-mounted folders: in-place edits (mtime/size), added and deleted files,
atomic renames as editors and `git pull` do (a new inode under the same name) and symlink swaps as
deployment tools do (`rules -> releases/42/rules`: the link target changes). A snapshot is a plain dict of
path -> (resolved target, inode, mtime_ns, size), so two snapshots compare with `==`.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, Sequence

log = logging.getLogger("idhooks.rules.watch")
Snapshot = dict[str, tuple[str, int, int, int]]


def _entry(path: Path) -> tuple[str, int, int, int]:
    try:
        stat = path.stat()
    except OSError:
        return ("missing", 0, 0, 0)
    return (os.path.realpath(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)


def snapshot(paths: Sequence[Path]) -> Snapshot:
    """The state of every watched path and, for folders, of everything below them."""
    state: Snapshot = {}
    for root in map(Path, paths):
        state[str(root)] = _entry(root)
        if root.is_dir():
            for folder, dirs, files in os.walk(root, followlinks=True):
                dirs.sort()
                for name in sorted(dirs + files):
                    state[os.path.join(folder, name)] = _entry(Path(folder, name))
    return state


class FolderWatcher:
    """A daemon thread polling `paths` every `interval` seconds; `on_change()` runs on the thread after a
    change (its exceptions are logged, and the watcher keeps going)."""

    def __init__(self, paths: Sequence[Path], interval: float, on_change: Callable[[], object]) -> None:
        self.paths = [Path(p) for p in paths]
        self.interval = interval
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = snapshot(self.paths)

    def poll(self) -> bool:
        """Compare with the last snapshot once; call on_change() and return True if anything changed."""
        current = snapshot(self.paths)
        if current == self._last:
            return False
        self._last = current
        try:
            self.on_change()
        except Exception:
            log.exception("rule reload after a change failed")
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rules-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.interval * 2, 1.0))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()
