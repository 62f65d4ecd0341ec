"""Group commit for events that change nothing else (reads): many requests' events, one transaction.

An audited read must not answer before its event is committed, but giving every read a transaction of its own
costs a connection, a BEGIN, an INSERT and a COMMIT each (and on SQLite the database write lock). Requests
hand their event to :class:`GroupCommitWriter` and wait; one task chains whatever has queued up in a single
transaction (:func:`server.audit.sealer.chain_now`: straight into the chain, no pending row and no later seal
pass) and then releases every waiter. Under load a transaction carries several events; alone, a read
waits for one short transaction, as before. A failed write fails every request waiting on it.

The writer keeps one connection of its own, outside the ORM: a batch is BEGIN, lock, head, the inserts,
COMMIT, with no session to build and no pool check-out with its liveness ping (two round trips) each time;
on PostgreSQL the batch runs on the bare asyncpg connection, with one insert for all three tables. A
connection found dead before the batch committed is replaced and the batch retried once; a failure during
COMMIT is never retried (the batch may have committed), it fails the waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.audit.sealer import chain_now, chain_now_on_driver
from server.db import WRITE_OPTION, write_gate

MAX_BATCH: Final = 500
APPLICATION_NAME: Final = "strongroom audit writer"


class AuditWriteFailed(Exception):
    """What every request of a failed batch gets; the database's error is its cause."""


class _CommitFailed(Exception):
    """COMMIT itself failed: whether the batch is in the chain is unknown, so it is not retried."""


class _ConnectionLost(Exception):
    """The held connection died before COMMIT: nothing of the batch committed, so it may be retried."""


class GroupCommitWriter:
    """Writes queued pending events, many per transaction; :meth:`write` returns once its event committed."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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
                except _ConnectionLost:
                    await self._commit(rows)  # the held connection had died (database restart): once, on a new one
        except Exception as error:  # noqa: BLE001 - every waiter gets the failure; the writer goes on
            cause = error.__cause__ if isinstance(error, _ConnectionLost | _CommitFailed) else error
            failure = AuditWriteFailed("the audit trail could not record this request's event")
            failure.__cause__ = cause
            self._fail(batch, failure)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    async def _commit(self, rows: list[dict[str, Any]]) -> None:
        """Chain ``rows`` in one durable transaction on the held connection.

        A plain (durable) commit: these events are in the chain once committed, and a chain tail lost in a
        crash would let later events take its sequence numbers, a fork for anyone who saw it.
        """
        connection = self._connection or await self._connect()
        if connection.dialect.name == "postgresql":
            await self._commit_on_driver(connection, rows)
            return
        try:
            # On SQLite the write option makes this BEGIN IMMEDIATE (server.db): the head is read under the lock.
            transaction = await connection.begin()
            await chain_now(connection, rows)
        except BaseException as error:
            await self._discard_connection()
            if isinstance(error, DBAPIError) and error.connection_invalidated:
                raise _ConnectionLost from error
            raise
        try:
            await transaction.commit()
        except BaseException as error:
            await self._discard_connection()
            raise _CommitFailed from error

    async def _commit_on_driver(self, connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        # PostgreSQL: straight on asyncpg (see chain_now_on_driver), in a transaction of its own.
        driver: Any = (await connection.get_raw_connection()).driver_connection
        try:
            await chain_now_on_driver(driver, rows)
        except BaseException as error:
            lost = driver.is_closed()
            await self._discard_connection()  # also ends the transaction it may have opened
            if lost:
                raise _ConnectionLost from error
            raise
        try:
            await driver.execute("COMMIT")
        except BaseException as error:
            await self._discard_connection()
            raise _CommitFailed from error

    async def _connect(self) -> AsyncConnection:
        connection = self._connection = await self._engine.connect()
        await connection.execution_options(**{WRITE_OPTION: True})
        if connection.dialect.name == "postgresql":  # so that pg_stat_activity tells it from the pool's
            await connection.exec_driver_sql(f"SET application_name = '{APPLICATION_NAME}'")
            await connection.commit()
        return connection

    async def _discard_connection(self) -> None:
        connection, self._connection = self._connection, None
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
