"""The group-commit writer's append on SQLite, in one call to the connection's thread.

Through SQLAlchemy a batch of read events was five calls to aiosqlite's thread (BEGIN IMMEDIATE, the chain head,
the events, their field rows, COMMIT), each a hand-over between threads that costs more than the SQL on a small
machine. Here the whole transaction runs on the connection's thread in one call, as PostgreSQL's runs in one
statement (``strongroom_audit_append``): the head is read under the write lock, the events are chained by
:func:`server.audit.sealer.chain_after` (the seal passes' code, so the same hashes) and inserted, and the
transaction commits or rolls back before the call returns. Values are bound with the columns' own SQLAlchemy
bind processors, so they are stored exactly as the ORM and the seal passes store them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, cast

import aiosqlite
from sqlalchemy import Table
from sqlalchemy.engine import Dialect

from server.audit.models import AuditEventRecord
from server.audit.sealer import EVENT_COLUMNS, ChainedRows, chain_after

__all__ = ["SqliteCommitFailed", "append_on_sqlite"]

_EVENTS: Final = cast(Table, AuditEventRecord.__table__)
_HEAD: Final = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"
# Built from constants only (the column names of EVENT_COLUMNS); every value is a bound parameter.
_INSERT_EVENTS: Final = (f"INSERT INTO audit_events ({', '.join(EVENT_COLUMNS)}) "  # noqa: S608
                         f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})")
_INSERT_FIELDS: Final = "INSERT INTO audit_event_fields (seq, field) VALUES (?, ?)"
_INSERT_SUBJECTS: Final = "INSERT INTO audit_event_subjects (seq, subject_id) VALUES (?, ?)"

Processor = Callable[[Any], Any] | None


class SqliteCommitFailed(Exception):
    """The batch was written and its COMMIT failed: it may or may not be in the chain (the cause is chained)."""


def bind_processors(dialect: Dialect) -> tuple[Processor, ...]:
    """The bind processor of each ``audit_events`` column, in :data:`EVENT_COLUMNS` order, for ``dialect``."""
    return tuple(_EVENTS.c[name].type.bind_processor(dialect) for name in EVENT_COLUMNS)


def _event_rows(chained: ChainedRows, processors: tuple[Processor, ...]) -> Iterable[tuple[Any, ...]]:
    for values in zip(*chained.columns, strict=True):
        yield tuple(value if process is None or value is None else process(value)
                    for process, value in zip(processors, values, strict=True))


def _append(connection: aiosqlite.Connection, rows: Sequence[Mapping[str, Any]],
            processors: tuple[Processor, ...]) -> None:
    """On the connection's thread: one write transaction that chains ``rows`` after the head and commits."""
    raw = connection._conn
    raw.execute("BEGIN IMMEDIATE")
    try:
        head = raw.execute(_HEAD).fetchone()
        chained = chain_after(head, ((None, row) for row in rows))
        raw.executemany(_INSERT_EVENTS, _event_rows(chained, processors))
        if chained.touched_seq:
            raw.executemany(_INSERT_FIELDS, zip(chained.touched_seq, chained.touched_field, strict=True))
        if chained.concerned_seq:
            raw.executemany(_INSERT_SUBJECTS, zip(chained.concerned_seq, chained.concerned_subject, strict=True))
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    try:
        raw.execute("COMMIT")
    except sqlite3.Error as error:
        raise SqliteCommitFailed from error


async def append_on_sqlite(connection: aiosqlite.Connection, rows: Sequence[Mapping[str, Any]],
                           processors: tuple[Processor, ...]) -> None:
    """Chain pending-event rows (:func:`server.audit.trail.pending_event`) in one durable transaction of their own
    on ``connection``, outside any transaction SQLAlchemy knows of; the caller holds the SQLite write gate.

    Raises:
        SqliteCommitFailed: Everything was written and COMMIT failed.
        sqlite3.Error: Anything before COMMIT failed; nothing was written.
    """
    await connection._execute(_append, connection, rows, processors)  # type: ignore[no-untyped-call]
