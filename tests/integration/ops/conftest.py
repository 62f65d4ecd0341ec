"""Fixtures for backup tests: fresh, empty databases of the same backend as ``fx_database_url`` to restore into;
the backup events an installation recorded."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select

from server.audit.models import AuditEventRecord
from server.audit.sealer import seal_pending
from server.config import Settings, load_settings
from server.db import create_engine, create_session_factory

POSTGRES_ADMIN_URL = os.environ.get("STRONGROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

NewDatabase = Callable[[], Awaitable[str]]


@pytest.fixture(name="fx_new_database")
async def fx_new_database(fx_database_url: str, tmp_path: Path) -> AsyncIterator[NewDatabase]:
    """Makes empty databases (no schema) on the backend under test; PostgreSQL ones are dropped afterwards."""
    created: list[str] = []

    async def new() -> str:
        if fx_database_url.startswith("sqlite"):
            return f"sqlite+aiosqlite:///{tmp_path / f'restored-{len(created)}-{secrets.token_hex(3)}.db'}"
        name = f"strongroom_restore_{os.getpid()}_{secrets.token_hex(4)}"
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        created.append(name)
        host_part = POSTGRES_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
        return f"postgresql+asyncpg://{host_part}/{name}"

    yield new
    if created:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            for name in created:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


def settings_for(base: Settings, database_url: str, data_dir: Path, **overrides: object) -> Settings:
    """Settings of another installation sharing ``base``'s keys directory (keyring, audit key, erasure ledger)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return load_settings({}, data_dir=str(data_dir), keys_dir=str(base.resolved_keys_dir),
                         database_url=database_url, log_level="WARNING", **overrides)


async def backup_events(settings: Settings) -> list[AuditEventRecord]:
    """The ``backup`` and ``restore`` events about backups in ``settings``' database, sealed first, oldest first."""
    engine = create_engine(settings.resolved_database_url)
    try:
        sessions = create_session_factory(engine)
        async with sessions() as session:
            await seal_pending(session)
        async with sessions() as session, session.begin():
            return list((await session.execute(
                select(AuditEventRecord).where(AuditEventRecord.entity == "backup")
                .order_by(AuditEventRecord.seq))).scalars().all())
    finally:
        await engine.dispose()
