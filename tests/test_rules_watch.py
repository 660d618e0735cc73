"""The polling folder watcher sees in-place edits, added and deleted files, atomic renames and symlink
swaps. `poll()` is called directly (no sleeps); one test runs the real thread with a bounded wait."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from engine.match.watch import FolderWatcher


def watcher(paths: list[Path]) -> tuple[FolderWatcher, list[int]]:
    calls: list[int] = []
    return FolderWatcher(paths, 0.01, lambda: calls.append(1)), calls


def test_no_change_no_call(tmp_path):
    (tmp_path / "a.yaml").write_text("rules: []\n")
    w, calls = watcher([tmp_path])
    assert (w.poll(), calls) == (False, [])


def test_in_place_edit_with_the_same_mtime_but_another_size(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("rules: []\n")
    w, calls = watcher([tmp_path])
    stat = path.stat()
    path.write_text("rules: [] # changed\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert w.poll() and calls == [1]
    assert not w.poll()


def test_in_place_edit_with_the_same_size_but_a_new_mtime(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("rules: [1]\n")
    w, calls = watcher([tmp_path])
    path.write_text("rules: [2]\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert w.poll()


def test_added_and_deleted_files(tmp_path):
    w, calls = watcher([tmp_path])
    (tmp_path / "new.yaml").write_text("rules: []\n")
    assert w.poll()
    (tmp_path / "new.yaml").unlink()
    assert w.poll() and calls == [1, 1]


def test_atomic_rename_over_the_file(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("rules: [1]\n")
    w, _ = watcher([tmp_path])
    temp = tmp_path / ".a.yaml.swp"
    temp.write_text("rules: [2]\n")
    os.utime(temp, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))  # same size and mtime: only the inode
    os.replace(temp, path)
    assert w.poll()


def test_symlink_swap_of_the_rules_folder(tmp_path):
    for release in ("v1", "v2"):
        (tmp_path / release).mkdir()
        (tmp_path / release / "a.yaml").write_text("rules: []\n")
    link = tmp_path / "rules"
    link.symlink_to(tmp_path / "v1")
    w, _ = watcher([link])
    swap = tmp_path / "rules.new"
    swap.symlink_to(tmp_path / "v2")
    os.replace(swap, link)
    assert w.poll()


def test_a_watched_folder_that_disappears_and_comes_back(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    w, calls = watcher([folder])
    folder.rmdir()
    assert w.poll()
    folder.mkdir()
    assert w.poll() and calls == [1, 1]


def test_the_thread_calls_on_change_and_survives_a_failing_callback(tmp_path):
    changed = threading.Event()
    outcomes: list[str] = []

    def on_change() -> None:
        outcomes.append("call")
        if len(outcomes) == 1:
            raise RuntimeError("reload failed")
        changed.set()

    w = FolderWatcher([tmp_path], 0.01, on_change)
    w.start()
    try:
        (tmp_path / "a.yaml").write_text("x")
        (tmp_path / "b.yaml").write_text("y")
        deadline = 200
        while not changed.is_set() and deadline:
            (tmp_path / f"c{deadline}.yaml").write_text("z")
            changed.wait(0.02)
            deadline -= 1
        assert changed.is_set() and len(outcomes) >= 2
    finally:
        w.stop()
