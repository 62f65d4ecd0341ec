"""``backup verify``: prove a backup restores, without touching the configured database's data.

In order: the manifest's MAC; the file's size and SHA-256 against the manifest; decryption (every chunk
authenticated) into a scratch database (SQLite: a private temporary file; PostgreSQL: a database
``strongroom_verify_<random>`` created and dropped on the configured server); the schema revision and audit head
in the scratch copy against the manifest, and the revision against this code's migrations; pending audit events
sealed as a restore would; the whole audit chain and the newest signed checkpoint verified with the audit public
key; every KEK version the backup's data keys are wrapped under present in this keyring; and, for every audit
archive the backup's database records, a copy in the backup's directory that decrypts to the recorded SHA-256
(:mod:`server.ops.backup.archive_recovery`): without one, a restore could not put that archive back.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.sealer import seal_pending
from server.audit.store import TrailReport, load_or_create_audit_key, verify_trail
from server.audit.tags import AuditAction, AuditOutcome
from server.config import Settings
from server.db import create_engine, create_session_factory
from server.ops.backup import postgres, sqlite
from server.ops.backup.archive_copies import ArchiveRecord, recorded_archives_at
from server.ops.backup.archive_recovery import verify_archive_copies
from server.ops.backup.create import postgres_state
from server.ops.backup.encryption import BackupKeys
from server.ops.backup.errors import BackupError, BackupInvalid, BackupRefused
from server.ops.backup.events import failure_reason, record_backup_event_at
from server.ops.backup.files import create_private
from server.ops.backup.keys import load_keyring
from server.ops.backup.manifest import Manifest, SnapshotState, backup_and_manifest
from server.ops.backup.progress import BackupProgress, SilentProgress
from server.ops.backup.reading import decrypt_backup, open_backup
from server.ops.backup.schema import code_head, is_known_revision
from server.security.data_keys import DataKeyRow

__all__ = [
    "VerifyReport",
    "audit_public_key",
    "check_restored_database",
    "check_revision",
    "check_state",
    "verify_backup",
]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """A backup that verified: its manifest, what the scratch copy showed, and the archive copies checked."""

    backup: Path
    manifest: Manifest
    events_verified: int
    pending_sealed: int
    trail_detail: str
    archives_verified: tuple[int, ...]


def check_state(state: SnapshotState, manifest: Manifest) -> None:
    """The decrypted database must be the one the manifest describes.

    Raises:
        BackupInvalid: Schema revision, audit head or pending count differ.
    """
    if state.schema_revision != manifest.schema_revision:
        raise BackupInvalid(f"the database in the backup is at schema revision {state.schema_revision}, the "
                            f"manifest says {manifest.schema_revision}")
    if state.audit_head != manifest.audit_head or state.pending_audit_events != manifest.pending_audit_events:
        raise BackupInvalid("the audit head in the backup differs from its manifest")


def check_revision(manifest: Manifest) -> None:
    """Refuse a schema revision this code's migrations do not know (a backup from a newer Strongroom).

    Raises:
        BackupRefused: The revision is not in this code's migration graph.
    """
    if not is_known_revision(manifest.schema_revision):
        raise BackupRefused(
            f"the backup's schema revision {manifest.schema_revision} is newer than this Strongroom's migrations "
            f"(head {code_head()}); restore it with Strongroom {manifest.strongroom_version} or later")


async def _missing_kek_versions(session: AsyncSession, held: tuple[int, ...]) -> dict[int, int]:
    connection = await session.connection()
    if not await connection.run_sync(lambda sync: sa_inspect(sync).has_table(DataKeyRow.__tablename__)):
        return {}
    table = DataKeyRow.__table__
    rows = (await session.execute(
        select(table.c.kek_version, func.count()).where(table.c.wrapped.is_not(None))
        .group_by(table.c.kek_version))).all()
    return {int(version): int(count) for version, count in rows if version is not None and version not in held}


RestoredCheck = tuple[int, TrailReport, dict[int, int]]


async def check_restored_database(url: str, public_key: Ed25519PublicKey,
                                  kek_versions: tuple[int, ...]) -> RestoredCheck:
    """Seal pending audit events, verify the whole chain and newest checkpoint, and find missing KEK versions.

    The external checkpoint copy is not consulted: it belongs to the live trail, which may have grown past the
    backup.

    Returns:
        (events sealed now, the trail report, {KEK version missing from the keyring: data keys wrapped under it}).
    """
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:
            sealed = await seal_pending(session)
            async with session.begin():
                report = await verify_trail(session, public_key)
                missing = await _missing_kek_versions(session, kek_versions)
        return sealed, report, missing
    finally:
        await engine.dispose()


def audit_public_key(settings: Settings) -> Ed25519PublicKey:
    """The audit checkpoint public key, from the signing key in the keys directory.

    Raises:
        BackupError: The key is missing or unsafe.
    """
    try:
        return load_or_create_audit_key(settings.resolved_keys_dir, create=False).public_key()
    except (OSError, ValueError) as error:
        raise BackupError(f"cannot load the audit key to verify the chain: {error}") from None


async def _verify_sqlite(backup: Path, manifest: Manifest, keys: BackupKeys, progress: BackupProgress,
                         scratch_dir: Path | None, public_key: Ed25519PublicKey,
                         kek_versions: tuple[int, ...]) -> tuple[RestoredCheck, list[ArchiveRecord]]:
    with tempfile.TemporaryDirectory(prefix="strongroom-verify-", dir=scratch_dir) as folder:
        database = Path(folder) / "backup.db"
        with create_private(database) as sink:
            decrypt_backup(backup, sink, keys, progress)
        progress.phase("checking the decrypted database")
        sqlite.check_database_file(database)
        check_state(sqlite.read_state(database), manifest)
        check_revision(manifest)
        progress.phase("sealing pending events and verifying the audit chain")
        url = f"sqlite+aiosqlite:///{database}"
        return await check_restored_database(url, public_key, kek_versions), await recorded_archives_at(url)


async def _verify_postgres(settings: Settings, backup: Path, manifest: Manifest, keys: BackupKeys,
                           progress: BackupProgress, public_key: Ed25519PublicKey,
                           kek_versions: tuple[int, ...]) -> tuple[RestoredCheck, list[ArchiveRecord]]:
    if settings.is_sqlite:
        raise BackupError("verifying a PostgreSQL backup needs a PostgreSQL server: set STRONGROOM_DATABASE_URL to "
                          "one where the role may create a scratch database")
    check_revision(manifest)
    server_url = settings.resolved_database_url
    progress.phase("creating a scratch database")
    scratch_url = await postgres.create_scratch_database(server_url)
    try:
        await asyncio.to_thread(postgres.restore, scratch_url,
                                lambda stream: decrypt_backup(backup, stream, keys, progress), privileges=False)
        engine = create_engine(scratch_url)
        try:
            async with engine.connect() as connection, connection.begin():
                state = await postgres_state(connection)
        finally:
            await engine.dispose()
        check_state(state, manifest)
        progress.phase("sealing pending events and verifying the audit chain")
        checked = await check_restored_database(scratch_url, public_key, kek_versions)
        return checked, await recorded_archives_at(scratch_url)
    finally:
        progress.phase("dropping the scratch database")
        await postgres.drop_database(server_url, postgres.database_name(scratch_url))


async def _judge(settings: Settings, path: str | Path, progress: BackupProgress, keys: BackupKeys | None,
                 scratch_dir: Path | None) -> VerifyReport:
    """Every check of the module docstring, in order; raises at the first that fails (see ``verify_backup``)."""
    keyring = load_keyring(settings)
    keys = keys or BackupKeys(keyring.backup_key)
    public_key = audit_public_key(settings)
    backup, manifest = open_backup(path, keys, progress)
    try:
        if manifest.database == "sqlite":
            (sealed, report, missing), archives = await _verify_sqlite(
                backup, manifest, keys, progress, scratch_dir, public_key, keyring.kek_versions())
        elif manifest.database == "postgresql":
            (sealed, report, missing), archives = await _verify_postgres(
                settings, backup, manifest, keys, progress, public_key, keyring.kek_versions())
        else:
            raise BackupInvalid(f"unknown database kind {manifest.database!r} in the manifest")
    except SQLAlchemyError as error:
        raise BackupInvalid(f"the restored scratch database failed a check ({type(error).__name__})") from None
    if not report.ok:
        raise BackupInvalid(f"the audit chain in the backup does not verify: event {report.first_bad_seq} "
                            f"{report.problem}: {report.detail}")
    if missing:
        raise BackupRefused(
            "this keyring lacks KEK version(s) " + ", ".join(map(str, sorted(missing))) +
            f" under which {sum(missing.values())} data key(s) in the backup are wrapped: restored, their "
            "customers' encrypted fields would be unreadable (restore the keyring from the backup's time)")
    progress.phase(f"checking the copies of {len(archives)} audit archive(s) in {backup.parent}")
    archives_verified = await asyncio.to_thread(verify_archive_copies, archives, backup.parent, keys, progress)
    return VerifyReport(backup=backup, manifest=manifest, events_verified=report.events, pending_sealed=sealed,
                        trail_detail=report.detail, archives_verified=archives_verified)


async def verify_backup(
    settings: Settings,
    path: str | Path,
    *,
    progress: BackupProgress | None = None,
    keys: BackupKeys | None = None,
    scratch_dir: Path | None = None,
    record: bool = True,
) -> VerifyReport:
    """Verify a backup end to end (see the module docstring) and record the outcome in the audit trail.

    Args:
        settings: The keys (backup key, audit public key, keyring) and, for PostgreSQL backups, the server
            on which the scratch database is created.
        path: The backup file or its manifest.
        progress: Phases and bytes.
        keys: The backup keys; by default from the configured keyring.
        scratch_dir: Where an SQLite backup is decrypted (default: the system's temporary directory).
        record: Record a ``backup`` audit event in the configured database, outcome ``error`` for every failure
            below (a failure to record is reported on stderr and does not change the verdict).

    Raises:
        BackupError: Files, keys, tools, privileges or the server are missing (the backup was not judged).
        BackupInvalid: The backup is altered, truncated or inconsistent, or its audit chain does not verify.
        BackupRefused: Intact, but not restorable with this code and keyring (newer schema, another backup key,
            KEK versions missing).
    """
    try:
        report = await _judge(settings, path, progress or SilentProgress(), keys, scratch_dir)
    except Exception as error:
        # Also when the backup could not be judged (keys, tools, scratch database, files): a scheduled
        # verification that cannot run must leave a trace, not only one that finds damage.
        if record:
            name = backup_and_manifest(path)[0].name
            await record_backup_event_at(settings.resolved_database_url, action=AuditAction.BACKUP,
                                         outcome=AuditOutcome.ERROR,
                                         reason=f"verify of {name} failed: {failure_reason(error)}")
        raise
    if record:
        manifest = report.manifest
        await record_backup_event_at(
            settings.resolved_database_url, action=AuditAction.BACKUP, file_id=manifest.file_id,
            reason=f"backup {report.backup.name} verified: {report.trail_detail}",
            after={"file": report.backup.name, "sha256": manifest.sha256, "events_verified": report.events_verified,
                   "archives_verified": list(report.archives_verified)})
    return report
