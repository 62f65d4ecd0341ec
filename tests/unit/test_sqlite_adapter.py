"""The SQLite adapter (``server.sqlite_adapter``): the same results as SQLAlchemy's own aiosqlite adapter, one call
to the connection's thread per statement, none for a commit or rollback with no transaction open, and nothing
left half-done when a connection goes back to the pool mid-transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server import db


@pytest.fixture(name="engines")
async def fx_engines(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Strongroom's engine and SQLAlchemy's stock one, over two copies of the same small table."""
    made = []
    for name, factory in (("ours", db.create_engine), ("stock", create_async_engine)):
        engine = factory(f"sqlite+aiosqlite:///{tmp_path / name}.db")
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INT)"))
            await connection.execute(text("INSERT INTO item (name, n) VALUES ('a', 1), ('b', 2), ('c', 3)"))
        made.append(engine)
    yield made[0], made[1]
    for engine in made:
        await engine.dispose()


@pytest.fixture(name="calls")
def fx_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The name of every function aiosqlite runs on a connection's thread while the test runs."""
    seen: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    yield seen


async def _outcomes(engine: AsyncEngine) -> list[Any]:
    async with engine.begin() as connection:
        rows = (await connection.execute(text("SELECT id, name, n FROM item ORDER BY id"))).all()
        keys = list((await connection.execute(text("SELECT name AS label, n FROM item LIMIT 1"))).keys())
        updated = (await connection.execute(text("UPDATE item SET n = n + 10 WHERE n >= 2"))).rowcount
        inserted = (await connection.execute(text("INSERT INTO item (name, n) VALUES ('d', 4)"))).lastrowid
        many = (await connection.execute(text("INSERT INTO item (name, n) VALUES (:name, :n)"),
                                         [{"name": "e", "n": 5}, {"name": "f", "n": 6}])).rowcount
        returned = (await connection.execute(text("INSERT INTO item (name, n) VALUES ('g', 7) RETURNING id, n"))).all()
        none = (await connection.execute(text("SELECT id FROM item WHERE n < 0"))).all()
    return [rows, keys, updated, inserted, many, returned, none]


async def test_statements_give_what_sqlalchemys_own_adapter_gives(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    ours, stock = engines
    outcomes = await _outcomes(ours)
    assert outcomes == await _outcomes(stock)
    assert outcomes[2] == 2  # row counts are the statement's, not a stale one


async def test_a_statement_is_one_call_and_nothing_open_is_never_ended(
        engines: tuple[AsyncEngine, AsyncEngine], calls: list[str]) -> None:
    ours, _ = engines
    async with ours.connect() as connection:
        await connection.execution_options(**{db.READ_OPTION: True})  # as a read_transaction: no BEGIN
        calls.clear()
        await connection.execute(text("SELECT name FROM item WHERE id = 1"))
        assert calls == ["_run"]  # cursor, execute, fetch and close, in one call
        calls.clear()
        await connection.commit()  # SQLAlchemy began a transaction, the database did not: nothing to end
        await connection.rollback()
    assert calls == []


async def test_a_begun_transaction_is_committed_or_rolled_back_for_real(
        engines: tuple[AsyncEngine, AsyncEngine], calls: list[str]) -> None:
    ours, _ = engines
    async with ours.connect() as connection:
        await connection.execute(text("INSERT INTO item (name, n) VALUES ('kept', 1)"))
        calls.clear()
        await connection.commit()
        assert calls == ["commit"]
    async with ours.connect() as connection:
        await connection.execute(text("INSERT INTO item (name, n) VALUES ('given back', 1)"))
    # Given back to the pool mid-transaction: the pool's rollback must reach the database.
    async with ours.connect() as connection:
        names = set((await connection.execute(text("SELECT name FROM item"))).scalars())
    assert "kept" in names
    assert "given back" not in names


async def test_a_failed_statement_leaves_the_transaction_to_be_rolled_back(
        engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    ours, _ = engines
    async with ours.connect() as connection:
        await connection.execute(text("INSERT INTO item (name, n) VALUES ('x', 1)"))
        with pytest.raises(IntegrityError):
            await connection.execute(text("INSERT INTO item (name, n) VALUES ('a', 1)"))
        await connection.rollback()
    async with ours.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM item WHERE name = 'x'"))).scalar_one() == 0


async def test_a_read_transaction_begins_nothing_and_a_write_transaction_still_does(
        engines: tuple[AsyncEngine, AsyncEngine], calls: list[str]) -> None:
    ours, _ = engines
    sessions = db.create_session_factory(ours)
    async with sessions() as session:
        calls.clear()
        async with db.read_transaction(session):
            await session.execute(text("SELECT n FROM item WHERE id = 1"))
        assert calls == ["_run"]  # no BEGIN, no COMMIT, no rollback when the connection went back
    async with sessions() as session, db.write_transaction(session):
        await session.execute(text("UPDATE item SET n = 100 WHERE id = 1"))
        raw = await (await session.connection()).get_raw_connection()
        assert raw.driver_connection.in_transaction


async def test_a_streamed_result_inside_a_transaction_is_still_rolled_back(
        engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    ours, _ = engines
    async with ours.connect() as connection:  # BEGIN is emitted with the first statement (server.db)
        await connection.execute(text("INSERT INTO item (name, n) VALUES ('streamed', 1)"))
        result = await connection.stream(text("SELECT name FROM item"))
        assert "streamed" in {row.name async for row in result}
        await connection.rollback()
    async with ours.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM item WHERE name = 'streamed'"))).scalar_one() == 0
