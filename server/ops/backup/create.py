"""``backup create``: a consistent snapshot of the running database, encrypted, with its manifest.

SQLite: one step of SQLite's online backup API into a private scratch file beside the output, then encrypted
(the scratch file is removed at once). PostgreSQL: a ``REPEATABLE READ`` transaction exports its snapshot
(``pg_export_snapshot()``), reads the schema revision and the audit head in it, and ``pg_dump --snapshot`` dumps
exactly that state; the archive streams from ``pg_dump`` into the encryptor and never touches the disk in clear.
Either way the manifest describes the very state in the backup, whatever was written meanwhile.

Events committed but not yet sealed when the snapshot is taken are in the backup as pending events (the
manifest counts them); a restore seals them. Pending events are sealed just before the snapshot, so normally
there are few.

Then every audit archive file the database records is protected: those without a copy in the backup directory
are copied there, encrypted (:mod:`server.ops.backup.archive_copies`). A missing or altered archive file fails
the command after the database backup was written, which is kept: it is good, and the database must not go
unprotected because one archive file is damaged.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from server import __version__
from server.audit import retention
from server.audit.sealer import seal_pending
from server.audit.tags import AuditAction, AuditOutcome
from server.config import Settings
from server.db import create_engine, create_session_factory
from server.ops.backup import postgres, sqlite
from server.ops.backup.archive_copies import ArchiveProtection, protect_archives, recorded_archives
from server.ops.backup.encryption import FILE_ID_BYTES, BackupKeys, EncryptedFile
from server.ops.backup.errors import ArchivesUnprotected, BackupError
from server.ops.backup.events import failure_reason, record_backup_event, record_backup_event_at
from server.ops.backup.files import PARTIAL_SUFFIX, encrypt_into, fsync_directory, prepare_directory
from server.ops.backup.keys import load_backup_keys
from server.ops.backup.manifest import (
    BACKUP_SUFFIX,
    AuditHead,
    Manifest,
    SnapshotState,
    manifest_path,
    write_manifest,
)
from server.ops.backup.progress import BackupProgress, SilentProgress

__all__ = ["CreatedBackup", "create_backup", "postgres_state"]


@dataclass(frozen=True, slots=True)
class CreatedBackup:
    """A backup written: the encrypted file, its manifest file, what the manifest says, and the archive copies."""

    path: Path
    manifest_path: Path
    manifest: Manifest
    archives: ArchiveProtection


def _sqlite_backup(url: str, partial: Path, keys: BackupKeys, file_id: bytes,
                   progress: BackupProgress) -> tuple[SnapshotState, EncryptedFile]:
    source = sqlite.sqlite_path(url)
    scratch = partial.with_name(partial.name.removesuffix(PARTIAL_SUFFIX) + ".snapshot" + PARTIAL_SUFFIX)
    try:
        progress.phase(f"snapshot of {source.name} (SQLite online backup)")
        sqlite.snapshot(source, scratch)
        state = sqlite.read_state(scratch)
        with scratch.open("rb") as plaintext:
            progress.phase("encrypting", os.fstat(plaintext.fileno()).st_size)
            encrypted = encrypt_into(partial, plaintext, keys, file_id, progress)
    finally:
        # The scratch copy is the database in clear: it never outlives this call.
        for leftover in (scratch, scratch.with_name(scratch.name + "-wal"), scratch.with_name(scratch.name + "-shm"),
                         scratch.with_name(scratch.name + "-journal")):
            leftover.unlink(missing_ok=True)
    return state, encrypted


async def postgres_state(connection: AsyncConnection) -> SnapshotState:
    """Schema revision, audit head and pending audit events, as ``connection``'s transaction sees them."""
    present = (await connection.execute(text(
        "SELECT to_regclass('public.alembic_version') IS NOT NULL, to_regclass('public.audit_events') IS NOT NULL, "
        "to_regclass('public.audit_pending') IS NOT NULL"))).one()
    revision = None
    if present[0]:
        revision = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    head = None
    if present[1]:
        row = (await connection.execute(text("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"))).first()
        head = AuditHead(seq=int(row[0]), hash=bytes(row[1]).hex()) if row else None
    pending = 0
    if present[2]:
        pending = int((await connection.execute(text("SELECT count(*) FROM audit_pending"))).scalar_one())
    return SnapshotState(str(revision) if revision is not None else None, head, pending)


async def _postgres_backup(engine: AsyncEngine, url: str, partial: Path, keys: BackupKeys, file_id: bytes,
                           progress: BackupProgress) -> tuple[SnapshotState, EncryptedFile]:
    async with engine.connect() as connection:
        snapshot_connection = await connection.execution_options(isolation_level="REPEATABLE READ",
                                                                 postgresql_readonly=True)
        async with snapshot_connection.begin():
            snapshot_id = str((await snapshot_connection.execute(text("SELECT pg_export_snapshot()"))).scalar_one())
            state = await postgres_state(snapshot_connection)
            progress.phase(f"pg_dump of database {postgres.database_name(url)!r} (custom format), encrypting")
            found: list[EncryptedFile] = []

            def dump_and_encrypt() -> None:
                postgres.dump(url, snapshot_id,
                              lambda stream: found.append(encrypt_into(partial, stream, keys, file_id, progress)))

            # The exporting transaction stays open until pg_dump is done: its snapshot must stay importable.
            await asyncio.to_thread(dump_and_encrypt)
    return state, found[0]


async def _prepare(settings: Settings, directory: Path, keys: BackupKeys | None,
                   sessions: async_sessionmaker[AsyncSession], progress: BackupProgress) -> BackupKeys:
    """The backup keys, the backup directory, and the pending audit events sealed (what a backup needs first).

    Raises:
        BackupError: No keyring, an unusable directory, no database or an unreachable one.
    """
    keys = keys or load_backup_keys(settings)
    prepare_directory(directory)
    url = settings.resolved_database_url
    if settings.is_sqlite and not sqlite.sqlite_path(url).is_file():
        raise BackupError(f"no SQLite database at {sqlite.sqlite_path(url)}")  # sealing would create an empty one
    progress.phase("sealing pending audit events")
    try:
        async with sessions() as session:
            await seal_pending(session)
    except (SQLAlchemyError, OSError) as error:
        raise BackupError(f"cannot reach the database ({type(error).__name__})") from None
    return keys


def _names(directory: Path, created_at: datetime, file_id: bytes) -> tuple[Path, Path]:
    name = f"strongroom-{created_at:%Y%m%dT%H%M%SZ}-{file_id[:2].hex()}{BACKUP_SUFFIX}"
    return directory / name, directory / (name + PARTIAL_SUFFIX)


async def create_backup(
    settings: Settings,
    out_dir: Path | None = None,
    *,
    progress: BackupProgress | None = None,
    keys: BackupKeys | None = None,
) -> CreatedBackup:
    """Snapshot the configured database, encrypt it with the keyring's backup key and write the manifest.

    Then copies, encrypted, every audit archive file the database records that has no copy in the directory
    yet (``archive_copies``). Records a ``backup`` audit event in the database (``error`` outcome, with the cause,
    for every failure, an archive that could not be copied included), naming the archives copied. Run as root,
    every file and directory it writes is the backup directory's owner's (:mod:`server.file_ownership`).

    Args:
        settings: Name the database, the keys and (without ``out_dir``) the backup directory.
        out_dir: Where to write; default ``settings.resolved_backup_dir``.
        progress: Phases and bytes (``StderrProgress`` in the CLI).
        keys: The backup keys; by default derived from the configured keyring.

    Raises:
        BackupError: No keyring, no database, a missing tool, an unwritable directory; nothing is left behind.
        ArchivesUnprotected: The database backup was written, but an archive file is missing, altered or
            unreadable (the other archives were copied).
    """
    progress = progress or SilentProgress()
    directory = out_dir if out_dir is not None else settings.resolved_backup_dir
    url = settings.resolved_database_url
    kind = "sqlite" if settings.is_sqlite else "postgresql"
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    try:
        try:
            keys = await _prepare(settings, directory, keys, sessions, progress)
        except Exception as error:
            await record_backup_event_at(url, action=AuditAction.BACKUP, outcome=AuditOutcome.ERROR,
                                         reason=f"backup failed: {failure_reason(error)}")
            raise
        created_at = datetime.now(UTC).replace(microsecond=0)
        file_id = os.urandom(FILE_ID_BYTES)
        target, partial = _names(directory, created_at, file_id)
        try:
            if settings.is_sqlite:
                state, encrypted = await asyncio.to_thread(_sqlite_backup, url, partial, keys, file_id, progress)
            else:
                state, encrypted = await _postgres_backup(engine, url, partial, keys, file_id, progress)
            progress.phase("manifest")
            partial.replace(target)
            manifest = Manifest(
                file=target.name, file_id=file_id.hex(), size=encrypted.size, sha256=encrypted.sha256,
                plaintext_bytes=encrypted.plaintext_bytes, database=kind, schema_revision=state.schema_revision,
                created_at=created_at, strongroom_version=__version__, audit_head=state.audit_head,
                pending_audit_events=state.pending_audit_events, key_id=keys.key_id,
            )
            write_manifest(manifest_path(target), manifest, keys)
            fsync_directory(directory)
        except BaseException as error:
            for leftover in (partial, target, manifest_path(target)):  # never half a backup
                leftover.unlink(missing_ok=True)
            if isinstance(error, Exception):
                await record_backup_event_at(url, action=AuditAction.BACKUP, outcome=AuditOutcome.ERROR,
                                             reason=f"backup failed: {failure_reason(error)}", file_id=file_id.hex())
            if isinstance(error, SQLAlchemyError | ConnectionError):
                raise BackupError(f"the database failed during the backup ({type(error).__name__})") from None
            raise
        head = state.audit_head
        details: dict[str, Any] = {
            "file": target.name, "sha256": encrypted.sha256, "size": encrypted.size, "database": kind,
            "schema_revision": state.schema_revision, "audit_head_seq": head.seq if head else None,
            "key_id": keys.key_id}
        archives = await _protect_archives(settings, sessions, directory, keys, progress, target.name, file_id)
        details["archives_copied"] = [copy.manifest.archive for copy in archives.copied]
        if archives.unprotected:
            numbers = [number for number, _why in archives.unprotected]
            await record_backup_event_at(
                url, action=AuditAction.BACKUP, outcome=AuditOutcome.ERROR, file_id=file_id.hex(),
                reason=f"backup {target.name} created, but audit archive(s) {_listed(numbers)} are not protected: "
                       f"{archives.unprotected_summary()}",
                after={**details, "archives_unprotected": numbers})
            raise ArchivesUnprotected(
                f"backup {target.name} was written, but audit archive(s) {_listed(numbers)} could not be copied "
                f"into {directory}: {archives.unprotected_summary()}. Their events may exist nowhere else: put the "
                "files back from another copy and run the backup again; until then `backup create --prune` and the "
                "schedule prune nothing (older backups may still hold those events)")
        await record_backup_event(sessions, action=AuditAction.BACKUP, file_id=file_id.hex(),
                                  reason=f"backup {target.name} created", after=details)
        return CreatedBackup(path=target, manifest_path=manifest_path(target), manifest=manifest, archives=archives)
    finally:
        await engine.dispose()


def _listed(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers))


async def _protect_archives(settings: Settings, sessions: async_sessionmaker[AsyncSession], directory: Path,
                            keys: BackupKeys, progress: BackupProgress, backup_name: str,
                            file_id: bytes) -> ArchiveProtection:
    """Copy into ``directory`` every archive the live database records that has no copy there yet.

    The live database, read after the snapshot: archive rows are only ever added, so it records every archive
    the snapshot does, and each of them has a copy once this returns without unprotected archives.
    """
    progress.phase("audit archives")
    archive_directory = retention.archive_dir(settings.data_dir, settings.audit_archive_dir)
    try:
        async with sessions() as session, session.begin():
            records = await recorded_archives(session)
        return await asyncio.to_thread(protect_archives, records, archive_directory, directory, keys, progress)
    except (SQLAlchemyError, OSError, BackupError) as error:
        reason = f"backup {backup_name} created, but the audit archives could not be listed or copied " \
                 f"({failure_reason(error)})"
        await record_backup_event_at(settings.resolved_database_url, action=AuditAction.BACKUP,
                                     outcome=AuditOutcome.ERROR, reason=reason, file_id=file_id.hex())
        raise BackupError(reason) from None
