"""Group commit for events that change nothing else (reads): many requests' events, one transaction.

An audited read must not answer before its event is committed, but giving every read a transaction of its own
costs a connection, a BEGIN, an INSERT and a COMMIT each (and on SQLite the database write lock). Requests
hand their event to :class:`GroupCommitWriter` and wait; one task chains whatever has queued up in a single
transaction (straight into the chain, as :func:`server.audit.sealer.chain_now` appends: no pending row and no
later seal pass) and then releases every waiter. Under load a transaction carries several events; alone, a read
waits for one short transaction, as before. A failed write fails every request waiting on it.

The writer keeps one connection of its own, outside the ORM, with no session to build and no pool check-out
with its liveness ping (two round trips) each time. On SQLite a batch is BEGIN IMMEDIATE, head, the inserts and
COMMIT in one call to the connection's thread (:mod:`server.audit.sqlite_append`). On PostgreSQL it is one
statement on the bare asyncpg connection, its own durable transaction: ``strongroom_audit_append`` locks the
chain, reads the head, chains and inserts in the database. When the held PostgreSQL connection dies (a database
restart, a failover) the batch is tried once more on a new one: as it is if it cannot have committed (dead
before it was sent), and, when the connection died after the statement was sent, only if its first event is not
in the chain (looked up under the chain lock; a batch commits whole or not at all). Any other failure, and any
on SQLite (an embedded database has no connection to lose), is not retried: it fails the waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.audit.sealer import chain_now_on_driver, chain_unless_landed_on_driver
from server.audit.sqlite_append import Processor, SqliteCommitFailed, append_on_sqlite, bind_processors
from server.db import WRITE_OPTION, write_gate

MAX_BATCH: Final = 500
APPLICATION_NAME: Final = "strongroom audit writer"


class AuditWriteFailed(Exception):
    """What every request of a failed batch gets; the database's error is its cause."""


class _CommitFailed(Exception):
    """It failed once it may have committed, not for a lost connection: not retried."""


class _ConnectionLost(Exception):
    """The held connection died: before the batch could commit (retried as it is), or, on PostgreSQL, after it
    was sent (``maybe_landed``: retried only if it is not in the chain)."""

    def __init__(self, *, maybe_landed: bool = False) -> None:
        super().__init__()
        self.maybe_landed = maybe_landed


class GroupCommitWriter:
    """Writes queued pending events, many per transaction; :meth:`write` returns once its event committed."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._driver: Any = None  # the held connection's driver (asyncpg or aiosqlite) connection
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._processors: tuple[Processor, ...] | None = None

    def start(self) -> None:
        """Start the writing task on the running event loop."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Write what is queued, then stop and give the connection back."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._queue:
            await self._write_batch()
        await self._discard_connection()

    async def write(self, row: dict[str, Any]) -> None:
        """Queue one pending-event row (:func:`server.audit.trail.pending_event`) and wait until it commits."""
        if self._task is None or self._task.done():
            raise RuntimeError("the audit group-commit writer is not running")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, done))
        self._ready.set()
        await done

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                await self._write_batch()

    async def _write_batch(self) -> None:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        rows = [row for row, _ in batch]
        try:
            async with write_gate(self._engine):
                try:
                    await self._commit(rows)
                except _ConnectionLost as lost:  # a database restart, a failover: once more, on a new connection
                    await self._commit(rows, unless_landed=lost.maybe_landed)
        except Exception as error:  # noqa: BLE001 - every waiter gets the failure; the writer goes on
            cause = error.__cause__ if isinstance(error, _ConnectionLost | _CommitFailed) else error
            failure = AuditWriteFailed("the audit trail could not record this request's event")
            failure.__cause__ = cause
            self._fail(batch, failure)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    async def _commit(self, rows: list[dict[str, Any]], *, unless_landed: bool = False) -> None:
        """Chain ``rows`` in one durable transaction on the held connection.

        A plain (durable) commit: these events are in the chain once committed, and a chain tail lost in a
        crash would let later events take its sequence numbers, a fork for anyone who saw it.
        """
        connection = self._connection or await self._connect()
        driver = self._driver
        if connection.dialect.name == "postgresql":
            await self._commit_on_driver(driver, rows, unless_landed=unless_landed)
            return
        # SQLite: BEGIN IMMEDIATE, head, inserts and COMMIT in one call to the connection's thread
        # (server.audit.sqlite_append). An embedded database has no connection that can be lost on the way.
        if self._processors is None:
            self._processors = bind_processors(connection.dialect)
        try:
            await append_on_sqlite(driver, rows, self._processors)
        except SqliteCommitFailed as error:
            await self._discard_connection()
            raise _CommitFailed from error.__cause__
        except BaseException:
            await self._discard_connection()
            raise

    async def _commit_on_driver(self, driver: Any, rows: list[dict[str, Any]], *, unless_landed: bool) -> None:
        # PostgreSQL: one statement on the bare asyncpg connection, its own transaction (chain_now_on_driver).
        if driver.is_closed():  # dropped while idle (the database restarted): nothing was sent
            await self._discard_connection()
            raise _ConnectionLost
        try:
            await (chain_unless_landed_on_driver if unless_landed else chain_now_on_driver)(driver, rows)
        except BaseException as error:
            lost = driver.is_closed()
            await self._discard_connection()
            if lost and not unless_landed:  # sent, then the connection died: it may have committed
                raise _ConnectionLost(maybe_landed=True) from error
            raise _CommitFailed from error

    async def _connect(self) -> AsyncConnection:
        """Open the held connection and its driver connection, both or neither."""
        self._connection = await self._engine.connect()
        try:
            await self._connection.execution_options(**{WRITE_OPTION: True})
            if self._connection.dialect.name == "postgresql":  # so that pg_stat_activity tells it from the pool's
                await self._connection.exec_driver_sql(f"SET application_name = '{APPLICATION_NAME}'")
                await self._connection.commit()
            # Kept beside it: asking the pool for it per batch costs a greenlet (and a fresh Python frame stack).
            self._driver = (await self._connection.get_raw_connection()).driver_connection
        except BaseException:
            await self._discard_connection()
            raise
        return self._connection

    async def _discard_connection(self) -> None:
        connection, self._connection, self._driver = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()

    @staticmethod
    def _fail(batch: list[tuple[dict[str, Any], asyncio.Future[None]]], error: BaseException) -> None:
        for _, done in batch:
            if not done.done():
                done.set_exception(error)
