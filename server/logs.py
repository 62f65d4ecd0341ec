"""Operational logging: structlog, JSON lines, request ids. Never secrets, tokens or personal data."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO, cast

import msgspec
import structlog

# msgspec writes a log line's JSON several times faster than json.dumps (one line per request); values it does
# not know are written as their repr, as structlog's own fallback does.
_LINE_ENCODER = msgspec.json.Encoder(enc_hook=repr)


def _json_line(event: Any, **_options: Any) -> str:
    try:
        return _LINE_ENCODER.encode(event).decode()
    except (TypeError, ValueError):  # a key msgspec cannot write (a tuple, say): a log call must never fail
        return json.dumps(event, default=repr, skipkeys=True)


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is when a line is written. Loggers are cached on first use, and a
    stream bound then (a test's captured stderr, closed since) must not fail every later log call."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str) -> None:
    """Route structlog and stdlib logging to JSON lines on stderr at ``level``."""
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared, structlog.processors.format_exc_info, structlog.processors.JSONRenderer(serializer=_json_line),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # WriteLogger writes a line and its newline in one call (print() makes two: two system calls per line).
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processors=[
            *shared, structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(serializer=_json_line),
        ])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that would log SQL parameters or request lines at INFO stay at WARNING.
    for noisy in ("sqlalchemy.engine", "aiosqlite", "asyncpg", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
