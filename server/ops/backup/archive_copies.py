"""Copies of audit archive files in the backup directory, and the step of ``backup create`` that makes them.

Once ``strongroom audit archive`` has moved expired events into an archive file (:mod:`server.audit.retention`),
that file is the only copy of them. ``backup create`` therefore copies every archive the database records
(``audit_archives``) that has no copy in the backup directory yet: encrypted with the backup key in the same
streaming format as a database backup (archives hold clear names), beside a manifest of their own kind
(:mod:`server.ops.backup.archive_manifest`). Archives never change, so each is copied once per backup
directory; ``backup prune`` never deletes a copy.

The bytes encrypted are hashed in the same pass, and a copy gets its name only if they match the SHA-256 and
size in ``audit_archives``: an archive file that is missing, altered or unreadable is reported, never skipped
and never copied.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import __version__
from server.audit.models import AuditArchive
from server.db import create_engine, create_session_factory
from server.ops.backup.archive_manifest import ArchiveCopyManifest, read_archive_manifest, write_archive_manifest
from server.ops.backup.encryption import FILE_ID_BYTES, BackupKeys
from server.ops.backup.errors import BackupError, BackupInvalid, BackupRefused
from server.ops.backup.files import PARTIAL_SUFFIX, HashingReader, encrypt_into, fsync_directory
from server.ops.backup.manifest import ARCHIVE_COPY_FORMAT, BACKUP_SUFFIX, manifest_format, manifest_path
from server.ops.backup.progress import BackupProgress

__all__ = [
    "ArchiveCopy",
    "ArchiveProtection",
    "ArchiveRecord",
    "archive_problems",
    "authenticated_copies",
    "copies_by_archive",
    "protect_archives",
    "recorded_archives",
    "recorded_archives_at",
    "scan_archive_copies",
]


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    """An archive as its row in ``audit_archives`` records it: number, file name, SHA-256, size, range."""

    number: int
    file_name: str
    sha256: str
    size: int
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class ArchiveCopy:
    """An encrypted copy in a backup directory, with its authenticated manifest."""

    path: Path
    manifest: ArchiveCopyManifest


@dataclass(frozen=True, slots=True)
class ArchiveProtection:
    """What ``protect_archives`` did: copies made, archives copied before, archives it could not protect."""

    copied: tuple[ArchiveCopy, ...]
    already_copied: tuple[int, ...]
    unprotected: tuple[tuple[int, str], ...]  # (archive number, why)

    def unprotected_summary(self) -> str:
        """``archive 3: why; archive 5: why``."""
        return archive_problems(self.unprotected)


def archive_problems(problems: Iterable[tuple[int, str]]) -> str:
    """(archive number, why) pairs as one line: ``archive 3: why; archive 5: why``."""
    return "; ".join(f"archive {number}: {why}" for number, why in problems)


class _NotCopied(Exception):
    """This archive could not be copied (the message says why)."""


async def recorded_archives(session: AsyncSession) -> list[ArchiveRecord]:
    """Every archive the database records, oldest first (none before the retention migration)."""
    connection = await session.connection()
    if not await connection.run_sync(lambda sync: sa_inspect(sync).has_table(AuditArchive.__tablename__)):
        return []
    rows = (await session.execute(
        select(AuditArchive.id, AuditArchive.file_name, AuditArchive.file_sha256, AuditArchive.file_bytes,
               AuditArchive.first_seq, AuditArchive.last_seq).order_by(AuditArchive.id))).all()
    return [ArchiveRecord(number=int(number), file_name=str(name), sha256=str(digest), size=int(size),
                          first_seq=int(first), last_seq=int(last))
            for number, name, digest, size, first, last in rows]


async def recorded_archives_at(url: str) -> list[ArchiveRecord]:
    """``recorded_archives`` of the database at ``url``."""
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            return await recorded_archives(session)
    finally:
        await engine.dispose()


def scan_archive_copies(directory: Path) -> list[Path]:
    """The ``.srbk`` files in ``directory`` whose manifest claims to be an archive copy's (not yet authenticated)."""
    claimed: list[Path] = []
    try:
        candidates = sorted(path for path in directory.glob("*" + BACKUP_SUFFIX) if path.is_file())
    except OSError as error:
        raise BackupError(f"cannot list {directory}: {error.strerror}") from None
    for path in candidates:
        try:
            if manifest_format(manifest_path(path)) == ARCHIVE_COPY_FORMAT:
                claimed.append(path)
        except (BackupError, BackupInvalid):
            continue  # no readable manifest: not a copy this code made (prune reports such files)
    return claimed


def authenticated_copies(paths: Iterable[Path], keys: BackupKeys) -> tuple[list[ArchiveCopy], list[tuple[Path, str]]]:
    """The copies among ``paths`` whose manifest authenticates with ``keys``, and (path, why) for the others."""
    copies: list[ArchiveCopy] = []
    rejected: list[tuple[Path, str]] = []
    for path in paths:
        try:
            copies.append(ArchiveCopy(path, read_archive_manifest(manifest_path(path), keys)))
        except (BackupError, BackupInvalid, BackupRefused) as error:
            rejected.append((path, str(error)))
    return copies, rejected


def copies_by_archive(directory: Path, keys: BackupKeys) -> dict[tuple[int, str], ArchiveCopy]:
    """The authenticated copies in ``directory`` by (archive number, archive SHA-256)."""
    copies, _rejected = authenticated_copies(scan_archive_copies(directory), keys)
    found: dict[tuple[int, str], ArchiveCopy] = {}
    for copy in copies:
        found.setdefault((copy.manifest.archive, copy.manifest.archive_sha256), copy)
    return found


def _copy_archive(record: ArchiveRecord, archive_directory: Path, backup_directory: Path, keys: BackupKeys,
                  progress: BackupProgress) -> ArchiveCopy:
    name = Path(record.file_name).name
    source = archive_directory / name
    target = backup_directory / (name + BACKUP_SUFFIX)
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    if target.exists() or manifest_path(target).exists():
        raise _NotCopied(f"{target.name} in {backup_directory} is not an authentic copy of it (move that file and "
                         "its manifest aside)")
    try:
        size = source.stat().st_size
    except FileNotFoundError:
        raise _NotCopied(f"its file {name} is missing from {archive_directory}") from None
    except OSError as error:
        raise _NotCopied(f"its file {source} cannot be read: {error.strerror}") from None
    if size != record.size:
        raise _NotCopied(f"its file {name} is {size} bytes, audit_archives records {record.size}: altered")
    file_id = os.urandom(FILE_ID_BYTES)
    progress.phase(f"copying audit archive {record.number} ({name}), encrypting", size)
    published = False
    try:
        with source.open("rb") as plaintext:
            reader = HashingReader(plaintext)
            encrypted = encrypt_into(partial, reader, keys, file_id, progress)
        if reader.size != record.size or reader.hexdigest() != record.sha256:
            raise _NotCopied(f"its file {name} does not match the SHA-256 audit_archives records: altered")
        partial.replace(target)
        published = True
        manifest = ArchiveCopyManifest(
            file=target.name, file_id=file_id.hex(), size=encrypted.size, sha256=encrypted.sha256,
            archive=record.number, archive_file=name, archive_sha256=record.sha256, archive_bytes=record.size,
            first_seq=record.first_seq, last_seq=record.last_seq, copied_at=datetime.now(UTC).replace(microsecond=0),
            strongroom_version=__version__, key_id=keys.key_id)
        write_archive_manifest(manifest_path(target), manifest, keys)
        fsync_directory(backup_directory)
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if published:  # never a copy without its manifest, nor a manifest of a removed copy
            target.unlink(missing_ok=True)
            manifest_path(target).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _NotCopied(f"copying {name} into {backup_directory} failed: "
                             f"{error.strerror or type(error).__name__}") from None
        raise
    return ArchiveCopy(target, manifest)


def protect_archives(records: Iterable[ArchiveRecord], archive_directory: Path, backup_directory: Path,
                     keys: BackupKeys, progress: BackupProgress) -> ArchiveProtection:
    """Copy, encrypted, every recorded archive that has no authenticated copy in ``backup_directory`` yet.

    An archive that cannot be copied (file missing, altered, unreadable; the copy cannot be written) is listed
    in ``unprotected``; the others are still copied.

    Raises:
        BackupError: The backup directory cannot be listed.
    """
    existing = copies_by_archive(backup_directory, keys)
    copied: list[ArchiveCopy] = []
    already: list[int] = []
    unprotected: list[tuple[int, str]] = []
    for record in records:
        if (record.number, record.sha256) in existing:
            already.append(record.number)
            continue
        try:
            copied.append(_copy_archive(record, archive_directory, backup_directory, keys, progress))
        except _NotCopied as problem:
            unprotected.append((record.number, str(problem)))
    return ArchiveProtection(copied=tuple(copied), already_copied=tuple(already), unprotected=tuple(unprotected))
