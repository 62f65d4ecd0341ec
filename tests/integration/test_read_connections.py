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
from server.audit.group_commit import GroupCommitWriter
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


async def _connect_failure(url: str) -> Exception:
    """What the engine raises when it cannot open a connection to ``url`` (nothing is mocked but the route)."""
    engine = db.create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:
        return error
    finally:
        await engine.dispose()
    raise AssertionError(f"{url} accepted a connection")


def _assert_unavailable(response: Any, secret: str | None = None) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"] == "1"
    assert response.json()["type"].endswith("/database-unavailable")
    assert "Traceback" not in response.text and "retry" in response.json()["detail"]
    if secret is not None:
        assert secret not in response.text


async def test_a_database_that_refuses_a_new_connection_answers_503_not_500(
        fx_api: Any, tmp_path: Any) -> None:
    """PostgreSQL out of connections (a role over its limit: SQLSTATE 53300, as "too many clients"), an SQLite
    file that cannot be opened, and a database port that does not answer: the client is told to retry."""
    headers = await fx_api.login(["sales_manager"])
    if fx_api.backend == "postgresql":
        role = f"sr_no_connections_{uuid.uuid4().hex[:8]}"
        admin = create_async_engine(fx_api.engine.url.render_as_string(hide_password=False), poolclass=NullPool,
                                    isolation_level="AUTOCOMMIT")
        async with admin.connect() as connection:
            await connection.execute(text(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0"))
        try:
            failure = await _connect_failure(fx_api.engine.url.set(username=role).render_as_string(
                hide_password=False))
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f"DROP ROLE {role}"))
            await admin.dispose()
        assert getattr(getattr(failure, "orig", None), "sqlstate", None) == "53300"
    else:
        failure = await _connect_failure(f"sqlite+aiosqlite:///{tmp_path}")  # a directory, not a database file
    assert isinstance(failure, DBAPIError) and not failure.connection_invalidated
    with mock.patch.object(RecordService, "get", side_effect=failure):
        _assert_unavailable(await fx_api.client.get(f"/api/v1/contacts/{uuid.uuid4()}", headers=headers),
                            secret=str(tmp_path))
    refused = await _connect_failure("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    assert isinstance(refused, ConnectionRefusedError)
    with mock.patch.object(RecordService, "get", side_effect=refused):
        _assert_unavailable(await fx_api.client.get(f"/api/v1/contacts/{uuid.uuid4()}", headers=headers))


async def test_a_read_whose_audit_event_cannot_be_written_answers_503_and_shows_nothing(
        fx_api: Any, fx_headers: dict[str, str], fx_customer: dict[str, Any]) -> None:
    headers = fx_headers
    created = await fx_api.client.post("/api/v1/contacts", headers=headers, json={
        "customer_id": fx_customer["id"], "name": "Audit Failure", "email": "audit.failure@example.com"})
    assert created.status_code == 201, created.text
    with mock.patch.object(GroupCommitWriter, "_commit", side_effect=OSError(28, "No space left on device")):
        response = await fx_api.client.get(f"/api/v1/contacts/{created.json()['id']}", headers=headers)
    assert response.status_code == 503, response.text
    assert response.json()["type"].endswith("/audit-unavailable")
    assert "audit.failure" not in response.text and "Traceback" not in response.text
    assert (await fx_api.client.get(f"/api/v1/contacts/{created.json()['id']}", headers=headers)).status_code == 200


async def _lock_failure(fx_api: Any, tmp_path: Any) -> DBAPIError:
    """A statement refused because another transaction holds a lock: PostgreSQL's lock_not_available (55P03, as
    a lock or statement timeout or a deadlock would be), SQLite's "database is locked" past the busy timeout."""
    if fx_api.backend == "postgresql":
        url = fx_api.engine.url.render_as_string(hide_password=False)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}"
    holder_engine, waiter_engine = db.create_engine(url), db.create_engine(url)
    try:
        async with holder_engine.connect() as holder, waiter_engine.connect() as waiter:
            if fx_api.backend == "postgresql":
                await holder.execute(text("SELECT id FROM users ORDER BY id LIMIT 1 FOR UPDATE"))
                with pytest.raises(DBAPIError) as refused:
                    await waiter.execute(text("SELECT id FROM users ORDER BY id LIMIT 1 FOR UPDATE NOWAIT"))
            else:
                await holder.execute(text("CREATE TABLE IF NOT EXISTS t (n INT)"))
                await holder.commit()
                await holder.execution_options(**{db.WRITE_OPTION: True})
                await holder.execute(text("INSERT INTO t VALUES (1)"))  # holds the write lock (BEGIN IMMEDIATE)
                await waiter.execute(text("PRAGMA busy_timeout = 0"))
                await waiter.commit()
                with pytest.raises(DBAPIError) as refused:
                    await waiter.execute(text("INSERT INTO t VALUES (2)"))
            await waiter.rollback()
            await holder.rollback()
    finally:
        await holder_engine.dispose()
        await waiter_engine.dispose()
    return refused.value


async def test_a_statement_refused_for_a_lock_held_elsewhere_answers_503_not_500(fx_api: Any, tmp_path: Any) -> None:
    headers = await fx_api.login(["sales_manager"])
    refused = await _lock_failure(fx_api, tmp_path)
    assert refused.statement is not None and not refused.connection_invalidated
    with mock.patch.object(RecordService, "get", side_effect=refused):
        _assert_unavailable(await fx_api.client.get(f"/api/v1/contacts/{uuid.uuid4()}", headers=headers))
