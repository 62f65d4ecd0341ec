"""Operational logging: structlog, JSON lines, request ids. Never secrets, tokens or personal data."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str) -> None:
    """Route structlog and stdlib logging to JSON lines on stderr at ``level``."""
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processors=[
            *shared, structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer(),
        ])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that would log SQL parameters or request lines at INFO stay at WARNING.
    for noisy in ("sqlalchemy.engine", "aiosqlite", "asyncpg", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
