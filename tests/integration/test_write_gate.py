"""The SQLite write gate: writers of several processes queue for SQLite's one write lock instead of polling it.

Two engines on one database stand for two server processes (each holds its own file descriptor, and flock
locks belong to descriptors). On PostgreSQL there is no gate: writers do not wait for one another.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from server import db
from server.db import create_engine, create_session_factory, write_transaction


def _impatient(engine: AsyncEngine) -> None:
    """SQLite's own waiting off: a writer that finds the write lock taken fails at once ('database is locked')."""

    @event.listens_for(engine.sync_engine, "connect")
    def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()


async def test_a_writer_of_another_process_waits_at_the_gate_not_in_sqlite(fx_database_url: str) -> None:
    first, second = create_engine(fx_database_url), create_engine(fx_database_url)
    if fx_database_url.startswith("sqlite"):
        _impatient(second)
    order: list[str] = []
    first_in = asyncio.Event()

    async def hold_the_lock() -> None:
        async with create_session_factory(first)() as session, write_transaction(session):
            await session.execute(text("SELECT 1"))
            order.append("first in")
            first_in.set()
            await asyncio.sleep(0.3)
            order.append("first done")

    async def write_after() -> None:
        await first_in.wait()
        async with create_session_factory(second)() as session, write_transaction(session):
            await session.execute(text("SELECT 1"))
            order.append("second in")

    try:
        await asyncio.gather(hold_the_lock(), write_after())
    finally:
        await first.dispose()
        await second.dispose()
    if fx_database_url.startswith("sqlite"):
        # Without the gate the second writer's BEGIN IMMEDIATE finds the lock taken and, not waiting, fails.
        assert order == ["first in", "first done", "second in"]
    else:
        assert order == ["first in", "second in", "first done"]


async def test_a_nested_writer_of_the_same_process_gives_up_instead_of_hanging(
        fx_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "GATE_WAIT_SECONDS", 0.2)
    engine = create_engine(fx_database_url)
    sessions = create_session_factory(engine)
    try:
        async with sessions() as outer, write_transaction(outer):
            await outer.execute(text("SELECT 1"))
            if fx_database_url.startswith("sqlite"):
                with pytest.raises(TimeoutError):
                    async with sessions() as inner, write_transaction(inner):
                        pass
            else:
                async with sessions() as inner, write_transaction(inner):
                    await inner.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def test_a_writer_cancelled_while_it_waits_does_not_keep_the_gate(fx_database_url: str) -> None:
    """A task cancelled while it waits for another process leaves behind a thread that takes the file lock
    once that process lets go; it must give the lock back, or every other process would wait for ever."""
    first, second = create_engine(fx_database_url), create_engine(fx_database_url)
    first_in, release = asyncio.Event(), asyncio.Event()

    async def hold_the_lock() -> None:
        async with create_session_factory(first)() as session, write_transaction(session):
            await session.execute(text("SELECT 1"))
            first_in.set()
            await release.wait()

    async def write(engine: AsyncEngine) -> str:
        async with create_session_factory(engine)() as session, write_transaction(session):
            await session.execute(text("SELECT 1"))
        return "written"

    try:
        holder = asyncio.create_task(hold_the_lock())
        await first_in.wait()
        waiter = asyncio.create_task(write(second))
        await asyncio.sleep(0.2)  # the waiter is now parked in its thread, waiting for the first engine
        if fx_database_url.startswith("sqlite"):
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        else:  # PostgreSQL writers do not wait for one another
            assert waiter.done() and waiter.result() == "written"
        release.set()
        await holder
        async with asyncio.timeout(5):  # without the give-back, the first engine would wait here for ever
            assert await write(first) == "written"
            assert await write(second) == "written"
    finally:
        await first.dispose()
        await second.dispose()
