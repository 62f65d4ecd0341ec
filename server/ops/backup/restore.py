"""``backup restore``: put a backup into the configured database, then bring it up to this code and today's erasures.

The server must be stopped (or the target be a fresh database): a running server would keep writing into, and
caching keys from, the database being replaced.

In order:

1. The keyring and the whole erasure ledger; the manifest's MAC, the file's size and SHA-256, and the schema
   revision: a revision this code's migrations do not know (a backup from a newer Strongroom) is refused before
   anything is changed.
2. The data. SQLite: decrypted into a private file beside the target, checked (SQLite integrity check, revision
   and audit head against the manifest), then copied into the target with SQLite's backup API. Run as root, the
   target file is first given to the owner of its directory (:mod:`server.file_ownership`), as is every file the
   restore writes into Strongroom's directories, so that the server's user can open them afterwards. PostgreSQL: the
   decrypted archive goes through ``pg_restore`` into ``psql``, which empties the ``public`` schema and loads the
   backup in one transaction (rolled back on any failure).
3. ``strongroom migrate`` to this code's head.
4. The erasure ledger, re-applied: every data key it lists is destroyed again (``reapply_ledger``), and every
   customer it lists that is not a tombstone in the backup is erased again through the erasure service (clear
   personal text wiped, an ``erase`` event with the original legal basis): a customer erased after the backup
   stays erased.
5. A ``restore`` audit event; pending events sealed; the chain verified.
6. The audit checkpoint copy (``audit_checkpoint_sink``) describes the trail that was replaced: it is renamed
   ``<name>.before-restore-<time>`` and kept, so ``audit verify`` judges the restored trail from now on.
7. Every audit archive the restored database records that is not in the archive directory is put back from
   its copy beside the backup file, checked against the recorded SHA-256 (``archive_recovery``). An archive
   without a good copy is reported, not fatal: by then the database has been replaced and brought up to date,
   and failing would only hide the outcome of the steps before (a restore event of its own says which
   archives were put back and which were not).
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import retention
from server.audit.tags import AuditAction, AuditOutcome
from server.config import Settings
from server.db import create_engine, create_session_factory, current_revision, migrate, write_transaction
from server.domain.customers.models import Customer
from server.file_ownership import make_directory_as_parent_owner
from server.ops.backup import postgres, sqlite
from server.ops.backup.archive_copies import recorded_archives_at
from server.ops.backup.archive_recovery import ArchivesPutBack, put_back_archives
from server.ops.backup.encryption import BackupKeys
from server.ops.backup.errors import BackupError, BackupInvalid
from server.ops.backup.events import failure_reason, record_backup_event, record_backup_event_at
from server.ops.backup.files import create_private
from server.ops.backup.keys import load_keyring
from server.ops.backup.manifest import Manifest, backup_and_manifest
from server.ops.backup.progress import BackupProgress, SilentProgress
from server.ops.backup.reading import decrypt_backup, open_backup
from server.ops.backup.schema import code_head
from server.ops.backup.verify import audit_public_key, check_restored_database, check_revision, check_state
from server.security.access import AccessControl
from server.security.crypto import CryptoError
from server.security.field_cipher import FieldCipher
from server.security.principal import system_principal
from server.services.erasure import ERASED, ErasureService
from server.services.records import CallContext

__all__ = ["RestoreReport", "restore_backup"]


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What a restore did."""

    backup: Path
    manifest: Manifest
    schema_revision: str
    keys_destroyed_again: int
    customers_erased_again: int
    events_sealed: int
    trail_ok: bool
    trail_detail: str
    missing_kek_versions: dict[int, int]
    archived_checkpoint_sink: Path | None
    archives: ArchivesPutBack


def _restore_sqlite(url: str, backup: Path, manifest: Manifest, keys: BackupKeys, progress: BackupProgress) -> None:
    target = sqlite.sqlite_path(url)
    make_directory_as_parent_owner(target.parent, 0o700)
    # Beside the target: the same file system, and no copy of the data in clear anywhere else.
    with tempfile.TemporaryDirectory(prefix=".strongroom-restore-", dir=target.parent) as folder:
        decrypted = Path(folder) / "backup.db"
        with create_private(decrypted) as sink:
            decrypt_backup(backup, sink, keys, progress)
        progress.phase("checking the decrypted database")
        sqlite.check_database_file(decrypted)
        check_state(sqlite.read_state(decrypted), manifest)
        progress.phase(f"replacing {target.name} (SQLite backup API)")
        sqlite.copy_into(decrypted, target)


def _archive_checkpoint_sink(settings: Settings, now: datetime) -> Path | None:
    sink = settings.resolved_checkpoint_sink
    if not sink.exists():
        return None
    archived = sink.with_name(f"{sink.name}.before-restore-{now:%Y%m%dT%H%M%SZ}")
    sink.rename(archived)
    return archived


async def _erase_again(sessions: async_sessionmaker[AsyncSession], settings: Settings, cipher: FieldCipher,
                       manifest: Manifest) -> int:
    """Erase again, through the erasure service, every ledger subject the backup still holds in clear."""
    try:
        records = await asyncio.to_thread(cipher.ledger.read_all)
    except CryptoError as error:
        raise BackupError(f"the erasure ledger cannot be read: {error}") from None
    latest = {record.subject_id: record for record in records}
    access = AccessControl(sessions)
    await access.refresh_if_stale(force=True)
    erased = 0
    for subject, record in latest.items():
        try:
            customer_id = uuid.UUID(subject)
        except ValueError:
            continue
        async with sessions() as session:
            async with session.begin():  # closed before the erasure service opens its own transaction
                name = (await session.execute(select(Customer.name).where(Customer.id == customer_id))).scalar()
            if name is None or name == ERASED:
                continue  # not in the backup (created after it), or already a tombstone there
            context = CallContext(session=session, principal=system_principal("backup restore"), settings=settings,
                                  access=access, cipher=cipher)
            await ErasureService(context).erase(
                customer_id, legal_basis=f"{record.legal_basis} (re-applied after restoring backup {manifest.file})")
        erased += 1
    return erased


async def _after_restore(settings: Settings, backup: Path, manifest: Manifest, cipher: FieldCipher,
                         revision: str) -> tuple[int, int]:
    engine = create_engine(settings.resolved_database_url)
    try:
        sessions = create_session_factory(engine)
        async with sessions() as session, write_transaction(session):
            destroyed = await cipher.reapply_ledger(session)
        erased = await _erase_again(sessions, settings, cipher, manifest)
        head = manifest.audit_head
        await record_backup_event(
            sessions, action=AuditAction.RESTORE, file_id=manifest.file_id,
            reason=f"backup {backup.name} of {manifest.created_at:%Y-%m-%dT%H:%M:%SZ} restored and migrated to "
                   f"{revision}; erasure ledger re-applied",
            after={"file": backup.name, "sha256": manifest.sha256, "backup_schema_revision": manifest.schema_revision,
                   "schema_revision": revision, "backup_audit_head_seq": head.seq if head else None,
                   "keys_destroyed_again": len(destroyed), "customers_erased_again": erased},
        )
        return len(destroyed), erased
    finally:
        await engine.dispose()


async def _put_back_archives(settings: Settings, backup: Path, manifest: Manifest, keys: BackupKeys,
                             progress: BackupProgress) -> ArchivesPutBack:
    """Step 7: every archive the restored database records, back in the archive directory; recorded as an event."""
    url = settings.resolved_database_url
    records = await recorded_archives_at(url)
    directory = retention.archive_dir(settings.data_dir, settings.audit_archive_dir)
    progress.phase(f"audit archives: {len(records)} recorded, copies from {backup.parent}")
    archives = await asyncio.to_thread(put_back_archives, records, backup.parent, directory, keys, progress)
    reason = (f"audit archives after restoring backup {backup.name}: {len(archives.restored)} put back into "
              f"{directory}, {len(archives.present)} already there")
    if archives.not_restored:
        reason += f"; NOT put back: {archives.not_restored_summary()}"
    await record_backup_event_at(
        url, action=AuditAction.RESTORE, outcome=AuditOutcome.ERROR if archives.not_restored else AuditOutcome.OK,
        file_id=manifest.file_id, reason=reason,
        after={"archives_restored": list(archives.restored), "archives_present": list(archives.present),
               "archives_not_restored": [number for number, _why in archives.not_restored]})
    return archives


def _field_cipher(settings: Settings) -> FieldCipher:
    """The field cipher, with its erasure ledger read once: both must be usable before anything is replaced."""
    try:
        cipher = FieldCipher.from_settings(settings)
        cipher.ledger.read_all()
    except (OSError, ValueError, CryptoError) as error:
        raise BackupError(f"cannot load the keyring and erasure ledger: {error}") from None
    return cipher


async def _replace_data(settings: Settings, path: str | Path, keys: BackupKeys,
                        progress: BackupProgress) -> tuple[Path, Manifest]:
    """Steps 1 and 2: check the backup, then replace the configured database's data with it; returns the backup
    file and its manifest.

    Raises:
        BackupError, BackupInvalid, BackupRefused: As ``restore_backup``; nothing was changed.
    """
    url = settings.resolved_database_url
    kind = "sqlite" if settings.is_sqlite else "postgresql"
    backup, manifest = open_backup(path, keys, progress)
    if manifest.database != kind:
        raise BackupError(f"{backup.name} is a {manifest.database} backup; the configured database is {kind}")
    check_revision(manifest)
    if kind == "sqlite":
        await asyncio.to_thread(_restore_sqlite, url, backup, manifest, keys, progress)
    else:
        progress.phase(f"restoring into database {postgres.database_name(url)!r} (one transaction)")
        await asyncio.to_thread(postgres.restore, url, lambda stream: decrypt_backup(backup, stream, keys, progress),
                                privileges=True)
    return backup, manifest


async def restore_backup(
    settings: Settings,
    path: str | Path,
    *,
    progress: BackupProgress | None = None,
    keys: BackupKeys | None = None,
) -> RestoreReport:
    """Restore a backup into the configured database (see the module docstring; stop the server first).

    Args:
        settings: The target database, the keyring, the erasure ledger and the checkpoint sink.
        path: The backup file or its manifest.
        progress: Phases and bytes.
        keys: The backup keys; by default from the configured keyring.

    Every failure is recorded as a ``restore`` event with outcome ``error`` in the configured database (best
    effort: a database that cannot take it is reported on stderr).

    Raises:
        BackupError: Files, keys, the erasure ledger, tools or the database are missing, or the kinds differ
            (SQLite vs PostgreSQL): nothing was changed; or the data was restored and a later step failed.
        BackupRefused: Newer schema than this code, or made with another backup key: nothing was changed.
        BackupInvalid: The backup is altered or truncated: nothing was changed.
    """
    progress = progress or SilentProgress()
    url = settings.resolved_database_url
    name = backup_and_manifest(path)[0].name
    try:
        keyring = load_keyring(settings)
        keys = keys or BackupKeys(keyring.backup_key)
        cipher = _field_cipher(settings)
        public_key = audit_public_key(settings)  # needed to verify the restored chain: checked before replacing
        backup, manifest = await _replace_data(settings, path, keys, progress)
    except Exception as error:
        await record_backup_event_at(url, action=AuditAction.RESTORE, outcome=AuditOutcome.ERROR,
                                     reason=f"restore of {name} refused, nothing changed: {failure_reason(error)}")
        raise
    try:
        restored = await asyncio.to_thread(current_revision, url)
        if restored != manifest.schema_revision:
            raise BackupInvalid(f"the restored database is at revision {restored}, the manifest says "
                                f"{manifest.schema_revision}")
        progress.phase(f"migrating to {code_head()}")
        await asyncio.to_thread(migrate, url)
        revision = await asyncio.to_thread(current_revision, url) or ""
        progress.phase("re-applying the erasure ledger")
        destroyed, erased = await _after_restore(settings, backup, manifest, cipher, revision)
        archived = _archive_checkpoint_sink(settings, datetime.now(UTC))
        progress.phase("sealing pending events and verifying the audit chain")
        sealed, report, missing = await check_restored_database(url, public_key, keyring.kek_versions())
        archives = await _put_back_archives(settings, backup, manifest, keys, progress)
    except Exception as error:
        what = failure_reason(error)
        await record_backup_event_at(url, action=AuditAction.RESTORE, outcome=AuditOutcome.ERROR,
                                     reason=f"restore of {name}: data restored, then the follow-up failed ({what})")
        if isinstance(error, BackupInvalid):
            raise
        raise BackupError(f"the data was restored, then the follow-up failed ({what}): run `strongroom migrate` and "
                          "`strongroom keys reapply-ledger`, then `strongroom audit verify`") from None
    return RestoreReport(backup=backup, manifest=manifest, schema_revision=revision, keys_destroyed_again=destroyed,
                         customers_erased_again=erased, events_sealed=sealed, trail_ok=report.ok,
                         trail_detail=report.detail, missing_kek_versions=missing, archived_checkpoint_sink=archived,
                         archives=archives)

