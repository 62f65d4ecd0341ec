"""Group commit for events that change nothing else (reads): many requests' events, one transaction.

An audited read must not answer before its event is committed, but giving every read a transaction of its own
costs a connection, a BEGIN, an INSERT and a COMMIT each (and on SQLite the database write lock). Requests
hand their event to :class:`GroupCommitWriter` and wait; one task chains whatever has queued up in a single
transaction (:func:`server.audit.sealer.chain_now`: straight into the chain, no pending row and no later seal
pass) and then releases every waiter. Under load a transaction carries tens of events; alone, a read
waits for one short transaction, as before. A failed write fails every request waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.sealer import chain_now
from server.db import write_transaction

MAX_BATCH: Final = 500


class GroupCommitWriter:
    """Writes queued pending events, many per transaction; :meth:`write` returns once its event committed."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the writing task on the running event loop."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._queue:
            await self._write_batch()

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
        try:
            async with self._session_factory() as session, write_transaction(session):
                # A plain (durable) commit: these events are in the chain once committed, and a chain tail lost in
                # a crash would let later events take its sequence numbers, a fork for anyone who saw it.
                await chain_now(session, [row for row, _ in batch])
        except Exception as error:  # noqa: BLE001 - every waiter gets the failure; the writer goes on
            for _, done in batch:
                if not done.done():
                    done.set_exception(error)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)
