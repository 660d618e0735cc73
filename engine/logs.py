"""Structured logging: one line per record, `key=value` text (default) or JSON (`--log-json`).

Values are escaped so CR/LF or quotes in event data can never forge a second log line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from typing import Any

_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_BARE = re.compile(r"[\w\-.:/@+,\[\]]+", re.ASCII).fullmatch  # printed without quotes
_INFINITY = float("inf")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and k[0] != "_"}


def _text_value(value: Any) -> str:
    kind = type(value)
    if kind is int:  # bool is not: it prints as JSON's true/false below
        return str(value)
    if kind is float and -_INFINITY < value < _INFINITY:
        return repr(value)  # what json.dumps prints for a finite float
    if (kind is list or kind is tuple) and value and all(type(item) is str and _BARE(item) for item in value):
        return '"[' + ", ".join(f'\\"{item}\\"' for item in value) + ']"'  # as below, without two json.dumps
    text = value if kind is str else json.dumps(value, default=str, ensure_ascii=False)
    if _BARE(text):
        return text
    return json.dumps(text, ensure_ascii=False)  # quotes and escapes \r \n \" and control characters


class _Stamp:
    """The UTC time stamp of a record, formatted once per second: a request line's formatting is on every
    event's path (issue 14)."""

    def __init__(self) -> None:
        self.second, self.text = -1, ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self.second:  # a race only formats the same second twice
            self.text, self.second = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)), second
        return self.text


class TextFormatter(logging.Formatter):
    """`2026-11-29T06:10:00Z WARNING idhooks.intake message key=value ...` on one line."""

    def __init__(self) -> None:
        super().__init__()
        self._stamp = _Stamp()

    def format(self, record: logging.LogRecord) -> str:
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return self.line(record.created, record.levelname, record.name, record.getMessage(), _fields(record), exc)

    def line(self, created: float, level: str, logger: str, message: str, fields: dict[str, Any],
             exc: str | None = None) -> str:
        """The line of a record with these parts (also for `event_line`, which makes no LogRecord)."""
        message = message.replace("\r", "\\r").replace("\n", "\\n")
        parts = [self._stamp(created), level, logger, message]
        parts += [f"{k}={_text_value(v)}" for k, v in fields.items()]
        if exc is not None:
            parts.append("exc=" + _text_value(exc))
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return self.line(record.created, record.levelname, record.name, record.getMessage(), _fields(record), exc)

    @staticmethod
    def line(created: float, level: str, logger: str, message: str, fields: dict[str, Any],
             exc: str | None = None) -> str:
        """The line of a record with these parts (also for `event_line`, which makes no LogRecord)."""
        data = {"time": created, "level": level, "logger": logger, "message": message, **fields}
        if exc is not None:
            data["exc"] = exc
        return json.dumps(data, default=str, ensure_ascii=False)


class LineHandler(logging.StreamHandler):
    """A stream handler that formats a record before taking the handler's lock and holds it only to write
    the finished line: request threads log one line each, and formatting under the lock made them queue
    behind each other (issue 14).

    With `interval` > 0 (`idhooks serve`), INFO lines and below are gathered and written by one thread at most
    `interval` seconds later, all threads' lines in one write: a write per line gave the GIL away and back on
    every request. A WARNING or worse is written at once, after what was gathered, so lines keep their order
    and a warning before a crash is not lost; what is gathered is written at exit (logging's shutdown flush)."""

    def __init__(self, stream: Any = None, interval: float = 0.0) -> None:
        super().__init__(stream)
        self.interval = interval
        self._gathered: list[str] = []
        self._wake = threading.Event()
        if interval > 0:
            threading.Thread(target=self._write_loop, name="idhooks-log-writer", daemon=True).start()

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        try:
            line = self.format(record) + self.terminator
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - the logging contract: report on stderr, never raise
            self.handleError(record)
            return True
        self.put(record.levelno, line, record)
        return True

    def put(self, level: int, line: str, record: logging.LogRecord | None = None) -> None:
        """Write (or gather, see the class) one finished line."""
        if self.interval > 0 and level < logging.WARNING:
            with self.lock:  # type: ignore[union-attr]
                self._gathered.append(line)
                first = len(self._gathered) == 1
            if first:  # the writer takes every line added until it writes
                self._wake.set()
            return
        with self.lock:  # type: ignore[union-attr]
            self._write(record, "".join(self._gathered) + line if self._gathered else line)
            self._gathered.clear()

    def flush(self) -> None:
        """Write what was gathered (also called by logging.shutdown() at exit)."""
        with self.lock:  # type: ignore[union-attr]
            if self._gathered:
                self._write(None, "".join(self._gathered))
                self._gathered.clear()
            elif self.stream and hasattr(self.stream, "flush"):
                self.stream.flush()

    def _write(self, record: logging.LogRecord | None, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - as in handle()
            self.handleError(record or logging.makeLogRecord({"msg": "writing gathered log lines failed"}))

    def _write_loop(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.interval)
            self._wake.clear()  # before taking the lines: one added after this wakes the next round
            self.flush()


_direct: tuple[logging.Logger, LineHandler, TextFormatter | JsonFormatter] | None = None
"""What configure() installed: the idhooks logger, its one handler and that handler's formatter."""


def event_line(logger: logging.Logger, message: str, fields: dict[str, Any]) -> None:
    """`logger.info(message, extra=fields)`, for the line logged on every event request, by the shortest
    path: where configure() installed the only handler, the line is formatted and written (gathered) without
    a LogRecord and the logging machinery around it (a third of that line's cost; issue 14). Anywhere else
    (tests capturing records, an embedding program's own handlers or filters) it is logger.info() exactly."""
    installed = _direct
    if (installed is None or logger.parent is not installed[0] or logger.handlers or logger.filters
            or not logger.propagate or installed[0].handlers != [installed[1]] or installed[0].filters
            or installed[1].filters or installed[1].level > logging.INFO or logger.disabled
            or not logger.isEnabledFor(logging.INFO)):
        logger.info(message, extra=fields)
        return
    _, handler, formatter = installed
    handler.put(logging.INFO, formatter.line(time.time(), "INFO", logger.name, message, fields) + handler.terminator)


FLUSH_INTERVAL = 0.05
"""Seconds `idhooks serve` may hold an INFO line before writing it (LineHandler)."""


def flush() -> None:
    """Write the lines configure()'s handler has gathered. `idhooks serve` calls this as it ends: logging's
    own flush at exit misses handlers made before a library ran logging.config.dictConfig (granian does)."""
    if _direct is not None:
        _direct[1].flush()


def configure(log_format: str = "text", level: int = logging.INFO, interval: float = 0.0) -> None:
    """Send idhooks' logs to stderr in the chosen format (replacing earlier handlers); with `interval`, INFO
    lines are gathered for up to that many seconds (LineHandler).

    Neither format prints the caller's file and line, thread or process, so the records do not collect
    them: the logging HOWTO's "Optimization" settings, a fifth of a request line's cost (issue 14)."""
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    global _direct
    handler = LineHandler(sys.stderr, interval)
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    handler.setFormatter(formatter)
    root = logging.getLogger("idhooks")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    _direct = (root, handler, formatter)
