"""SQLAlchemy's aiosqlite adapter, with one hand-over to the connection's thread per statement instead of four.

aiosqlite runs every call on a thread of its own connection, and SQLAlchemy's adapter makes four such calls for
a query (open a cursor, execute, fetch, close the cursor) and three for a write. Each is a queue hand-over, a
thread wake-up and an event-loop wake-up: counted, a single audited read on SQLite made 23 of them and the
plain app's read 6, and they were most of the CPU between the two. Here a statement is one call that does all
four on the connection's thread and brings back the rows, the description, the row count and the last row id.
Same driver, same SQL, same transactions; server-side (streaming) cursors keep SQLAlchemy's own adapter.

It leans on ``aiosqlite.Connection._execute`` (run a function on the connection's thread), which SQLAlchemy's
adapter itself reaches past aiosqlite's public API for (``_tx``, ``_conn``); ``tests/unit/test_sqlite_adapter.py``
pins the behaviour this relies on.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

__all__ = ["one_hop_dbapi"]

# description, rows (None when the statement returns none), row count, last row id, whether a transaction is open
_Outcome = tuple[Any, list[Any] | None, int, int | None, bool]


def _run(connection: aiosqlite.Connection, operation: str, parameters: Any, *, many: bool) -> _Outcome:
    """On the connection's thread: a cursor, the statement, its rows (if it returns any), then the cursor closed."""
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.rowcount, cursor.lastrowid, connection._conn.in_transaction
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statements each cost one call on the connection's thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:  # no aiosqlite cursor is opened (that was a call)
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _async_soft_close(self) -> None:
        pass  # nothing is open between statements

    def close(self) -> None:
        self._rows.clear()

    async def _outcome(self, operation: str, parameters: Any, *, many: bool) -> None:
        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await self._connection._execute(_run, self._connection, operation, parameters,
                                                                many=many)
        self._description, rows, self._rowcount, self._lastrowid, in_transaction = outcome
        cast("OneHopConnection", self._adapt_connection).transaction_open = in_transaction
        self._rows = collections.deque(rows) if rows else collections.deque()

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._outcome(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> None:
        await self._outcome(operation, seq_of_parameters, many=True)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection adapter with :class:`OneHopCursor` as its (non-streaming) cursor, and no
    call to the thread for a commit or rollback when no transaction is open.

    Each statement brings back whether the connection is in a transaction (sqlite3's ``in_transaction``, read
    on its thread in the same call), so a commit or rollback after statements that opened none, such as the
    pool's rollback of a connection given back after its commit, or the end of a read run without BEGIN, costs
    nothing. After a server-side cursor, which this adapter does not watch, a transaction is assumed open.
    """

    __slots__ = ("transaction_open",)
    _cursor_cls = OneHopCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.transaction_open = True  # unknown until the first statement: assume open

    def cursor(self, server_side: bool = False) -> Any:
        if server_side:
            self.transaction_open = True
        return super().cursor(server_side)

    def commit(self) -> None:
        if self.transaction_open:
            super().commit()
            self.transaction_open = False

    def rollback(self) -> None:
        if self.transaction_open:
            super().rollback()
            self.transaction_open = False


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The adapted aiosqlite module, handing out :class:`OneHopConnection` connections."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        connection = super().connect(*arg, **kw)
        return OneHopConnection(self, connection._connection)


def one_hop_dbapi() -> OneHopDBAPI:
    """The ``module`` to give ``create_async_engine`` for an aiosqlite URL."""
    return OneHopDBAPI(aiosqlite, sqlite3)
