"""Operational logging (server/logs.py)."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from server.logs import configure_logging


def test_a_cached_logger_writes_to_the_current_stderr_not_a_closed_earlier_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure_logging("INFO")
    log = structlog.get_logger("strongroom.test_logs")
    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    log.warning("first_line")  # the logger is cached now, while ``first`` is stderr
    assert json.loads(first.getvalue())["event"] == "first_line"
    first.close()  # as pytest closes a test's captured stderr

    second = io.StringIO()
    monkeypatch.setattr("sys.stderr", second)
    log.warning("second_line")  # raised "I/O operation on closed file" when the stream was bound at first use

    assert json.loads(second.getvalue())["event"] == "second_line"


class _Writes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def test_a_line_reaches_stderr_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """One write per line: stderr writes through, so each write is a system call (an access line per request)."""
    configure_logging("INFO")
    stream = _Writes()
    monkeypatch.setattr("sys.stderr", stream)
    structlog.get_logger("strongroom.test_logs").info("request", status=200)
    assert len(stream.calls) == 1 and stream.calls[0].endswith("}\n")
    assert json.loads(stream.calls[0])["status"] == 200
