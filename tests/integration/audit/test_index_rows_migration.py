"""Migration c7d9e2f4a6b8 on both databases: the audit field and subject rows lose their foreign key, keep every
row, their primary key and index, and stay append-only (on SQLite the tables are rebuilt and their triggers
made again)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db import MIGRATIONS_DIR, create_engine, migrate
from tests.conftest import BACKENDS, POSTGRES_ADMIN_URL, _postgres

BEFORE = "b4e8c1d2f3a5"
TABLES = ("audit_event_fields", "audit_event_subjects")


@pytest.fixture(params=BACKENDS, name="fx_url_before")
def fixture_url_before(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database migrated up to the revision before the change."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'strongroom.db'}"
        migrate(url, BEFORE)
        yield url
        return
    name = f"strongroom_migration_{secrets.token_hex(4)}"
    _postgres(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+asyncpg://{POSTGRES_ADMIN_URL.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
        migrate(url, BEFORE)
        yield url
    finally:
        _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(name="fx_engine")
async def fixture_engine(fx_url_before: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fx_url_before)
    yield engine
    await engine.dispose()


def _downgrade(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    command.downgrade(config, revision)


async def _foreign_keys(engine: AsyncEngine) -> dict[str, list[str]]:
    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: {
            table: [key["referred_table"] for key in inspect(sync).get_foreign_keys(table)] for table in TABLES})


async def _rows(engine: AsyncEngine) -> list[tuple[object, ...]]:
    async with engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(text(
            "SELECT 'field', seq, field FROM audit_event_fields UNION ALL "
            "SELECT 'subject', seq, subject_id FROM audit_event_subjects ORDER BY 1, 2, 3"))]


async def test_the_rows_stay_append_only_and_lose_only_their_foreign_key(
        fx_url_before: str, fx_engine: AsyncEngine) -> None:
    async with fx_engine.begin() as connection:
        await connection.execute(text(
            "INSERT INTO audit_events (seq, ts, action, outcome, canonical, prev_hash, hash) "
            "VALUES (1, CURRENT_TIMESTAMP, 'read', 'ok', :blob, :blob, :blob)"), {"blob": b"x"})
        await connection.execute(text("INSERT INTO audit_event_fields (seq, field) VALUES (1, 'email'), (1, 'phone')"))
        await connection.execute(text("INSERT INTO audit_event_subjects (seq, subject_id) VALUES (1, 'c-1')"))
    kept = await _rows(fx_engine)
    assert await _foreign_keys(fx_engine) == {table: ["audit_events"] for table in TABLES}

    await asyncio.to_thread(migrate, fx_url_before, "c7d9e2f4a6b8")  # Alembic runs its own event loop
    await fx_engine.dispose()
    assert await _foreign_keys(fx_engine) == {table: [] for table in TABLES}
    assert await _rows(fx_engine) == kept
    for statement in ("UPDATE audit_event_fields SET field = 'x'", "DELETE FROM audit_event_fields",
                      "UPDATE audit_event_subjects SET subject_id = 'x'", "DELETE FROM audit_event_subjects"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with fx_engine.begin() as connection:
                await connection.execute(text(statement))
    async with fx_engine.begin() as connection:  # the primary key still refuses a second copy of a row
        with pytest.raises(DBAPIError):
            await connection.execute(text("INSERT INTO audit_event_fields (seq, field) VALUES (1, 'email')"))
    async with fx_engine.connect() as connection:
        indexes = await connection.run_sync(lambda sync: {
            table: [index["name"] for index in inspect(sync).get_indexes(table)] for table in TABLES})
    assert indexes == {"audit_event_fields": ["ix_audit_event_fields_field_seq"],
                       "audit_event_subjects": ["ix_audit_event_subjects_subject_id_seq"]}

    await asyncio.to_thread(_downgrade, fx_url_before, BEFORE)
    await fx_engine.dispose()
    assert await _foreign_keys(fx_engine) == {table: ["audit_events"] for table in TABLES}
    assert await _rows(fx_engine) == kept
