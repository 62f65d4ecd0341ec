"""Fixtures for backup tests: fresh, empty databases of the same backend as ``fx_database_url`` to restore into;
installations of their own that archive audit events; the backup events an installation recorded; the CLI's
environment."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select

from server.audit import retention, trail
from server.audit.models import AuditArchive, AuditEventRecord
from server.audit.sealer import seal_pending
from server.audit.store import load_or_create_audit_key
from server.audit.tags import ActorType, AuditAction
from server.audit.trail import AuditActor
from server.config import Settings, load_settings
from server.db import create_engine, create_session_factory, migrate, write_transaction
from server.domain.base import utc_now

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


def cli_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings, backup_dir: Path | None = None) -> None:
    """The environment ``strongroom backup ...`` runs in for ``settings`` (and ``backup_dir``, if given)."""
    for name, value in (("STRONGROOM_DATA_DIR", settings.data_dir),
                        ("STRONGROOM_DATABASE_URL", settings.resolved_database_url),
                        ("STRONGROOM_KEYS_DIR", str(settings.resolved_keys_dir)),
                        ("STRONGROOM_LOG_LEVEL", "WARNING")):
        monkeypatch.setenv(name, value)
    if backup_dir is not None:
        monkeypatch.setenv("STRONGROOM_BACKUP_DIR", str(backup_dir))


# ------------------------------------------------------------------------------------------- audit archives

FUTURE = timedelta(days=3650)
TEST_ACTOR = AuditActor(type=ActorType.SYSTEM, id=None, name="archive backup tests")


@dataclass(frozen=True)
class Archived:
    """An archive made by a test: its number, file, recorded SHA-256, and the clear text its events hold."""

    number: int
    path: Path
    sha256: str
    marker: str


@pytest.fixture(name="fx_installation")
async def fx_installation(fx_settings: Settings, fx_new_database: NewDatabase, tmp_path: Path) -> Settings:
    """A migrated database of its own, with the session's keys; archives go to ``<tmp>/app/audit-archive``.

    Archiving deletes events, so a test that archives does it here, not in the session's database.
    """
    url = await fx_new_database()
    await asyncio.to_thread(migrate, url)
    return settings_for(fx_settings, url, tmp_path / "app")


def archive_directory(settings: Settings) -> Path:
    """Where ``settings``' installation keeps its audit archive files."""
    return retention.archive_dir(settings.data_dir, settings.audit_archive_dir)


async def archive_new_events(settings: Settings) -> Archived:
    """Record events holding a clear name, then archive every expired event (all but the newest).

    Expiry is simulated by archiving "as of" a moment far in the future, as the retention tests do.
    """
    marker = f"Clear Name {secrets.token_hex(6)}"
    engine = create_engine(settings.resolved_database_url)
    try:
        sessions = create_session_factory(engine)
        async with sessions() as session, write_transaction(session):
            for index in range(3):
                await trail.record(session, action=AuditAction.CREATE, actor=TEST_ACTOR, entity="customer",
                                   entity_id=str(uuid.uuid4()), after={"name": f"{marker} {index}"})
        async with sessions() as session:
            outcomes = [outcome async for outcome in retention.archive_expired(
                session, signing_key=load_or_create_audit_key(settings.resolved_keys_dir, create=False),
                directory=archive_directory(settings), retention_days=settings.audit_retention_days,
                actor=TEST_ACTOR, sink=settings.resolved_checkpoint_sink, now=utc_now() + FUTURE)]
        made = [outcome for outcome in outcomes if isinstance(outcome, retention.ArchiveResult)]
        assert len(made) == 1, outcomes
        async with sessions() as session, session.begin():
            row = (await session.execute(select(AuditArchive).order_by(AuditArchive.id.desc()))).scalars().first()
        assert row is not None
    finally:
        await engine.dispose()
    # The archive holds the clear name (in its events' canonical bytes), so the checks of the copies mean it.
    assert any(marker.encode() in base64.b64decode(event) for event in event_lines(made[0].path))
    return Archived(number=int(row.id), path=made[0].path, sha256=row.file_sha256, marker=marker)


def event_lines(archive: Path) -> list[bytes]:
    """The base64 canonical bytes of every event in an archive file, as they appear in it."""
    lines = [json.loads(line) for line in archive.read_text().splitlines()]
    return [line["canonical"].encode() for line in lines if line.get("type") == "event"]
