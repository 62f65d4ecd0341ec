"""Progress of long backup jobs: phases and bytes (with a percentage when the total is known), on stderr.

Lines name phases, file names and byte counts only: never a key, a password, a URL or any row content.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Protocol, TextIO

__all__ = ["BackupProgress", "SilentProgress", "StderrProgress", "format_bytes"]


class BackupProgress(Protocol):
    """Where a backup job reports what it is doing."""

    def phase(self, description: str, total_bytes: int | None = None) -> None:
        """A phase begins; ``total_bytes`` when its size is known in advance."""
        ...

    def advance(self, done_bytes: int) -> None:
        """``done_bytes`` of the current phase are done (a running total, not an increment)."""
        ...


class SilentProgress:
    """Reports nothing (the embedded schedule logs its outcome instead)."""

    def phase(self, description: str, total_bytes: int | None = None) -> None:
        """Ignore."""

    def advance(self, done_bytes: int) -> None:
        """Ignore."""


def format_bytes(count: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class StderrProgress:
    """One line per phase, then a line at most every ``interval`` seconds while bytes move.

    Args:
        stream: Where to write (standard error by default).
        interval: Seconds between byte-count lines.
        label: Prefix of every line.
    """

    def __init__(self, stream: TextIO | None = None, *, interval: float = 2.0, label: str = "backup") -> None:
        self._stream = stream or sys.stderr
        self._interval = interval
        self._label = label
        self._description = ""
        self._total: int | None = None
        self._last = 0.0
        self._lock = threading.Lock()  # advance() is called from worker threads

    def _write(self, text: str) -> None:
        self._stream.write(f"{self._label}: {text}\n")
        self._stream.flush()

    def phase(self, description: str, total_bytes: int | None = None) -> None:
        """Print the phase."""
        with self._lock:
            self._description, self._total, self._last = description, total_bytes, time.monotonic()
            size = f" ({format_bytes(total_bytes)})" if total_bytes is not None else ""
            self._write(f"{description}{size}")

    def advance(self, done_bytes: int) -> None:
        """Print the running total if ``interval`` has passed, or the phase is complete."""
        with self._lock:
            now = time.monotonic()
            complete = self._total is not None and done_bytes >= self._total
            if not complete and now - self._last < self._interval:
                return
            self._last = now
            if self._total:
                percent = min(100, done_bytes * 100 // self._total)
                self._write(f"{self._description}: {format_bytes(done_bytes)} of {format_bytes(self._total)} "
                            f"({percent}%)")
            else:
                self._write(f"{self._description}: {format_bytes(done_bytes)}")
