"""A local append-only spool that keeps intake alive while the shared store (Redis) is unreachable.

The hub gives up on an endpoint after ~20 s of errors and then stops delivering until someone
re-subscribes, so an outage of the shared store must not turn into non-2xx answers. While Redis cannot be
written, a genuine event is appended to `<dir>/<name>.spool` and fsynced before the caller acknowledges it;
a background thread drains the spool into the store once it answers again, oldest first. The store's own
de-duplication makes the drain safe to repeat: a crash halfway through a drain, or two processes sharing
one spool folder, can re-send an event but never store it twice.

Drain protocol: under the lock, `<name>.spool` is renamed to `<name>.<time_ns>.draining` (new events go to
a fresh spool file); each draining file is replayed in order and deleted only once every line in it was
stored. A torn last line (the process died mid-append, so that event was never acknowledged) is skipped.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from engine.errors import StoreError
from engine.store.base import IncomingEvent

log = logging.getLogger(__name__)

Sink = Callable[[IncomingEvent, float], object]
"""Stores one spooled event (with its de-duplication window); raises while the store is unreachable."""


def _encode(event: IncomingEvent, window: float) -> bytes:
    record = {"jti": event.jti, "webhook": event.webhook, "iat_ms": event.iat_ms,
              "received_at": event.received_at, "uris": list(event.uris), "window": window,
              "body": base64.b64encode(event.body).decode("ascii")}
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def _decode(line: bytes) -> tuple[IncomingEvent, float] | None:
    try:
        r = json.loads(line)
        event = IncomingEvent(jti=r["jti"], webhook=r["webhook"], iat_ms=r["iat_ms"],
                              received_at=r["received_at"], uris=tuple(r["uris"]),
                              body=base64.b64decode(r["body"]))
        return event, float(r["window"])
    except (ValueError, KeyError, TypeError):
        return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Durable FIFO of events waiting for the store. `sink` is called by the drain thread."""

    def __init__(self, directory: Path, sink: Sink, *, name: str = "events", retry_interval: float = 0.5) -> None:
        self.directory = Path(directory)
        self._sink, self._name, self._retry_interval = sink, name, retry_interval
        self._path = self.directory / f"{name}.spool"
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.active = self._has_files()
        if self.active:
            self._start()

    # -- intake ------------------------------------------------------------------------------------
    def append(self, event: IncomingEvent, window: float) -> None:
        """Write the event durably (fsync) and wake the drain thread; StoreError when the disk refuses."""
        line = _encode(event, window)
        try:
            with self._locked():
                created = not self._path.exists()
                fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if created:
                    _fsync_dir(self.directory)
                self.active = True
        except OSError as exc:
            raise StoreError(f"cannot write the spool {self._path}: {exc.strerror}") from None
        self._start()
        self._wake.set()

    def writable(self) -> bool:
        """Whether append() could write now (for readiness checks)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return os.access(self.directory, os.W_OK)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- draining ----------------------------------------------------------------------------------
    def drain(self) -> int:
        """Move every spooled event into the store, oldest first; how many lines were replayed.
        Raises whatever the sink raises (the store is still down); what is left stays spooled."""
        with self._locked():
            if self._path.exists():
                os.rename(self._path, self.directory / f"{self._name}.{time.time_ns():020d}.draining")
                _fsync_dir(self.directory)
        return sum(self._drain_file(path) for path in self._draining_files())

    def _drain_file(self, path: Path) -> int:
        try:
            handle = open(path, "rb")
        except FileNotFoundError:  # another process finished it
            return 0
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process is draining it now
                return 0
            count = 0
            for line in handle:
                record = _decode(line)
                if record is None:
                    log.warning("spool %s: skipped an unreadable line (torn write)", path)
                    continue
                self._sink(*record)
                count += 1
            path.unlink(missing_ok=True)
        return count

    def _draining_files(self) -> list[Path]:
        return sorted(self.directory.glob(f"{self._name}.*.draining"))

    def _has_files(self) -> bool:
        return self._path.exists() or bool(self._draining_files())

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=f"spool-drain-{self._name}", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.active:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                count = self.drain()
            except Exception as exc:  # noqa: BLE001 - store still down: keep the spool, try again later
                log.debug("spool %s: drain postponed: %s", self._path, exc)
                self._stop.wait(self._retry_interval)
                continue
            if count:
                log.info("spool %s: moved %d event(s) into the store", self._path, count)
            with self._locked():
                self.active = self._has_files()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time: a thread lock within this process, flock across processes."""
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.directory / f"{self._name}.lock", "a") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                yield
