"""Reads without BEGIN and COMMIT (on both databases), pooled connections pinged only after being idle, and a connection
the database dropped answered as 503, on both databases.

A read's unit of work runs in autocommit on PostgreSQL (two round trips fewer) and without BEGIN on SQLite (three
calls to the connection's thread fewer, ``server.sqlite_adapter``); nothing of it may leak into the
next unit of work on the same pooled connection. SQLAlchemy's pre-ping (three round trips on asyncpg at every
check-out) is replaced by a ping of connections idle for a while; a connection a restart broke in between fails
its statement, the pool replaces it and every connection as old, and the client gets a 503 problem, not a 500.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from server import db
from server.services.records import RecordService


async def _in_one_snapshot_time(session: Any) -> bool:
    """Whether two statements a moment apart ran in one transaction (PostgreSQL: ``now()`` is its start time)."""
    first = (await session.execute(text("SELECT now()"))).scalar_one()
    await asyncio.sleep(0.02)
    return bool(first == (await session.execute(text("SELECT now()"))).scalar_one())


async def test_a_read_runs_without_a_transaction_and_leaves_none_behind(fx_api: Any) -> None:
    async with fx_api.session_factory() as session, db.read_transaction(session):
        if fx_api.backend == "postgresql":
            assert not await _in_one_snapshot_time(session)  # each statement was its own transaction
        else:
            await session.execute(text("SELECT 1"))
            raw = await (await session.connection()).get_raw_connection()
            assert not raw.driver_connection.in_transaction  # SQLite: no BEGIN either
    # The same pooled connections serve the next units of work, in transactions again.
    for _ in range(3):
        async with fx_api.session_factory() as session, db.write_transaction(session):
            if fx_api.backend == "postgresql":
                assert await _in_one_snapshot_time(session)
            else:
                raw = await (await session.connection()).get_raw_connection()
                assert raw.driver_connection.in_transaction


async def _backend_pids(engine: AsyncEngine) -> set[int]:
    async with engine.connect() as connection:
        return {int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())}


async def _terminate(url: Any, pids: set[int]) -> None:
    """Kill server backends from outside the engine under test, as a restart would."""
    outside = create_async_engine(url, poolclass=NullPool)
    try:
        async with outside.connect() as connection:
            for pid in pids:
                await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await outside.dispose()


@pytest.mark.parametrize("idle_ping_seconds", [0.0, 3600.0], ids=["idle-long-enough-to-ping", "no-ping"])
async def test_a_connection_the_database_dropped_is_replaced(fx_api: Any, idle_ping_seconds: float) -> None:
    if fx_api.backend != "postgresql":
        pytest.skip("an embedded SQLite database has no server connection that can be dropped")
    engine = db.create_engine(fx_api.engine.url.render_as_string(hide_password=False))
    try:
        pids = await _backend_pids(engine)  # the pool keeps this one connection
        await _terminate(engine.url.render_as_string(hide_password=False), pids)
        with mock.patch.object(db, "IDLE_PING_SECONDS", idle_ping_seconds):
            if idle_ping_seconds == 0.0:  # pinged at check-out: replaced before use
                assert await _backend_pids(engine) != pids
            else:  # used as it was: the statement fails as a lost connection, the next gets a new one
                with pytest.raises(DBAPIError) as failure:
                    await _backend_pids(engine)
                assert failure.value.connection_invalidated
                assert await _backend_pids(engine) != pids
    finally:
        await engine.dispose()


async def test_a_statement_on_a_lost_connection_answers_503_not_500(fx_api: Any) -> None:
    headers = await fx_api.login(["sales_manager"])
    lost = DBAPIError("SELECT", None, ConnectionError("connection was closed in the middle of operation"),
                      connection_invalidated=True)
    with mock.patch.object(RecordService, "get", side_effect=lost):
        response = await fx_api.client.get(f"/api/v1/contacts/{uuid.uuid4()}", headers=headers)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["type"].endswith("/database-unavailable") and "retry" in body["detail"]
    assert "SELECT" not in response.text and "Traceback" not in response.text
    other = DBAPIError("SELECT", None, ValueError("some other failure"), connection_invalidated=False)
    with mock.patch.object(RecordService, "get", side_effect=other):
        response = await fx_api.client.get(f"/api/v1/contacts/{uuid.uuid4()}", headers=headers)
    assert response.status_code == 500 and "some other failure" not in response.text
