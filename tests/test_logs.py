"""The log handler `idhooks serve` installs: formats outside its lock, writes whole lines under it."""

from __future__ import annotations

import io
import json
import logging
import threading
import time

import pytest

from engine.logs import LineHandler, TextFormatter


def _logger(stream: io.StringIO, name: str) -> logging.Logger:
    handler = LineHandler(stream)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def test_lines_from_many_threads_are_never_interleaved():
    stream = io.StringIO()
    logger = _logger(stream, "idhooks.test-lines")

    def write(thread: int) -> None:
        for n in range(300):
            logger.info("delivery %s", "accepted", extra={"writer": thread, "n": n, "pad": "x" * 200})

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 8 * 300
    assert all(line.endswith("pad=" + "x" * 200) and " delivery accepted writer=" in line for line in lines)
    assert {line.split(" writer=")[1].split(" ")[0] for line in lines} == {str(t) for t in range(8)}


def test_a_record_that_cannot_be_formatted_is_reported_not_raised(capsys):
    stream = io.StringIO()
    logger = _logger(stream, "idhooks.test-bad-record")
    logger.info("bad %d", "not a number")  # the caller's mistake must not fail the request that logs it
    logger.info("next line")
    assert stream.getvalue().splitlines()[-1].endswith("next line")
    assert "--- Logging error ---" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "printed"), [
    (202, "202"), (-3, "-3"), (True, "true"), (None, "null"), (1.25, "1.25"), (1e-05, "1e-05"),
    (float("nan"), "NaN"), (float("inf"), "Infinity"), (-float("inf"), "-Infinity"),
    (["login.loginFailed"], '"[\\"login.loginFailed\\"]"'), ([], "[]"), (("a", "b"), '"[\\"a\\", \\"b\\"]"'),
    (["a b"], '"[\\"a b\\"]"'), (["x\ny"], '"[\\"x\\\\ny\\"]"'), ([1, 2], '"[1, 2]"'),
    ("plain-text", "plain-text"), ("two words", '"two words"'), ("forged\nINFO line", '"forged\\nINFO line"'),
])
def test_field_values_print_the_same_on_the_fast_paths(value, printed):
    """Numbers and lists of plain words skip json.dumps (a request line's cost, issue 14) and print
    exactly as before; anything else still goes through JSON escaping, so CR/LF cannot forge a line."""
    stream = io.StringIO()
    handler = LineHandler(stream)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("idhooks.test.fastpath")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.warning("m", extra={"field": value})
    line = stream.getvalue()
    assert line.endswith(f" m field={printed}\n")
    assert line.count("\n") == 1


def _gathering(stream: io.StringIO, name: str, interval: float) -> tuple[logging.Logger, LineHandler]:
    handler = LineHandler(stream, interval)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, handler


def test_serve_gathers_info_lines_and_writes_them_together_within_the_interval():
    """`idhooks serve` writes INFO lines in batches (one write for many requests, issue 14), but never holds
    one longer than the interval."""
    stream = io.StringIO()
    logger, _ = _gathering(stream, "idhooks.test-gather", 0.2)
    for n in range(50):
        logger.info("event accepted", extra={"n": n})
    assert stream.getvalue() == ""  # gathered, not yet written
    deadline = time.monotonic() + 5
    while stream.getvalue().count("\n") < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = stream.getvalue().splitlines()
    assert [line.rsplit("n=", 1)[1] for line in lines] == [str(n) for n in range(50)]


def test_a_warning_is_written_at_once_after_the_gathered_lines_in_order():
    stream = io.StringIO()
    logger, _ = _gathering(stream, "idhooks.test-gather-warning", 60)
    logger.info("first")
    logger.info("second")
    logger.warning("store unavailable")
    assert [line.split(" ", 3)[3] for line in stream.getvalue().splitlines()] == [
        "first", "second", "store unavailable"]


def test_gathered_lines_are_written_by_flush_at_exit():
    """logging.shutdown() flushes every handler at exit: a stopping server loses no line it gathered."""
    stream = io.StringIO()
    logger, handler = _gathering(stream, "idhooks.test-gather-exit", 60)
    logger.info("shutting down")
    assert stream.getvalue() == ""
    handler.flush()
    assert stream.getvalue().endswith(" shutting down\n")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_event_line_prints_exactly_what_logger_info_prints(log_format, monkeypatch):
    """`event_line` skips the LogRecord for the per-request line (issue 14): same line, hostile values
    escaped the same way, in both formats."""
    import sys

    from engine import logs

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure(log_format)
    try:
        logger = logging.getLogger("idhooks.http")
        fields = {"webhook": "asgardeo", "outcome": "accepted", "jti": "evil\nFAKE-LINE <b>", "types": ["a.b"],
                  "status": 202, "latency_ms": 1.25}
        logs.event_line(logger, "event accepted", fields)
        logger.info("event accepted", extra=fields)
    finally:  # undo configure(): later tests capture idhooks' records through the root logger
        root = logging.getLogger("idhooks")
        root.handlers[:] = []
        root.propagate = True
        root.setLevel(logging.NOTSET)
        logs._direct = None
    direct, standard = stream.getvalue().splitlines()
    if log_format == "json":
        direct_data, standard_data = json.loads(direct), json.loads(standard)
        assert direct_data.pop("time") == pytest.approx(standard_data.pop("time"), abs=5)
        assert direct_data == standard_data
    else:
        assert direct.split(" ", 1)[1] == standard.split(" ", 1)[1]  # all but the time stamp
        assert "FAKE-LINE" not in direct.split("\n", 1)[0][:20]


def test_the_event_line_goes_through_logging_where_idhooks_did_not_install_its_handler(caplog):
    from engine import logs

    logs._direct = None
    with caplog.at_level(logging.INFO, logger="idhooks.http"):
        logs.event_line(logging.getLogger("idhooks.http"), "event accepted", {"jti": "j-1"})
    [record] = [r for r in caplog.records if r.name == "idhooks.http"]
    assert record.getMessage() == "event accepted" and record.jti == "j-1"
