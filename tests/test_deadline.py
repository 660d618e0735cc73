"""The attempt deadline's watchdog: it is woken only when a new deadline ends first, so it must still cut off
a blocked read at the earliest end whatever order the deadlines come in."""

from __future__ import annotations

import socket
import threading
import time

from actions.deadline import deadline, watch


def _blocked_read(seconds: float, started: threading.Event, took: list[float]) -> None:
    """Open a deadline of `seconds`, watch one end of a silent socket pair and read from it."""
    left, right = socket.socketpair()
    try:
        with deadline(seconds) as d:
            watch(left)
            started.set()
            begin = time.monotonic()
            left.recv(1)  # nothing is ever sent: only the watchdog's shutdown ends this
            took.append(time.monotonic() - begin)
            assert d.passed
    finally:
        left.close()
        right.close()


def test_a_short_deadline_opened_after_a_long_one_still_fires_on_time():
    long_started, short_started = threading.Event(), threading.Event()
    long_took: list[float] = []
    short_took: list[float] = []
    long_reader = threading.Thread(target=_blocked_read, args=(3.0, long_started, long_took), daemon=True)
    long_reader.start()
    assert long_started.wait(5)
    time.sleep(0.05)  # the watchdog now sleeps until the long deadline
    short_reader = threading.Thread(target=_blocked_read, args=(0.2, short_started, short_took), daemon=True)
    short_reader.start()
    short_reader.join(2)
    assert short_took and short_took[0] < 2.0, "the short deadline waited for the long one"
    long_reader.join(6)
    assert long_took and long_took[0] >= 2.5


def test_a_later_deadline_opened_after_a_short_one_fires_after_it():
    first, second = threading.Event(), threading.Event()
    took_first: list[float] = []
    took_second: list[float] = []
    a = threading.Thread(target=_blocked_read, args=(0.2, first, took_first), daemon=True)
    a.start()
    assert first.wait(5)
    b = threading.Thread(target=_blocked_read, args=(0.6, second, took_second), daemon=True)  # not the earliest
    b.start()
    a.join(3)
    b.join(3)
    assert took_first and took_second, "a deadline never fired"
    assert took_second[0] >= 0.4


def test_ended_blocks_leave_nothing_behind_and_a_live_deadline_still_fires():
    """Every delivery attempt opens and closes two deadlines; the watchdog forgets a closed one lazily (no heap
    rebuild per attempt), so thousands of them must neither pile up nor hide the one that is still running."""
    from actions import deadline as deadlines

    for _ in range(5_000):
        with deadline(60.0):
            with deadline(10.0):
                pass
    assert len(deadlines._watchdog._heap) <= 200  # bounded, not 10,000 closed deadlines waiting for their time
    started, took = threading.Event(), []
    reader = threading.Thread(target=_blocked_read, args=(0.2, started, took), daemon=True)
    reader.start()
    reader.join(5)
    assert took and took[0] < 2.0, "a live deadline behind closed ones did not fire"
