"""Archive copies read back: ``backup verify`` checks them, ``backup restore`` puts them back.

A copy is used only after the same checks as a database backup: its manifest's MAC, the encrypted file's size,
SHA-256 and file id against the manifest, then every chunk authenticated while decrypting, and finally the
SHA-256 and size of the decrypted archive against the manifest, which names the archive's SHA-256 as
``audit_archives`` records it. A restore writes the decrypted archive to a private ``.partial`` file and gives
it its name only after all of that passed; it never replaces a file already in the archive directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from server.audit.tags import AuditAction, AuditOutcome
from server.config import Settings
from server.file_ownership import make_directory_as_parent_owner
from server.ops.backup.archive_copies import ArchiveCopy, ArchiveRecord, archive_problems, copies_by_archive
from server.ops.backup.archive_manifest import read_archive_manifest
from server.ops.backup.encryption import BackupKeys, PlaintextSink
from server.ops.backup.errors import BackupError, BackupInvalid
from server.ops.backup.events import failure_reason, record_backup_event_at
from server.ops.backup.files import PARTIAL_SUFFIX, HashingWriter, create_private, fsync_directory, sha256_of
from server.ops.backup.keys import load_backup_keys
from server.ops.backup.manifest import ARCHIVE_COPY_FORMAT, backup_and_manifest, manifest_format
from server.ops.backup.progress import BackupProgress, SilentProgress
from server.ops.backup.reading import check_encrypted_file, decrypt_backup

__all__ = [
    "ArchivesPutBack",
    "check_archive_copy",
    "is_archive_copy",
    "put_back_archives",
    "verify_archive_copies",
    "verify_archive_copy",
]


@dataclass(frozen=True, slots=True)
class ArchivesPutBack:
    """What a restore did with the archives the restored database records."""

    restored: tuple[int, ...]
    present: tuple[int, ...]
    not_restored: tuple[tuple[int, str], ...]  # (archive number, why)

    def not_restored_summary(self) -> str:
        """``archive 3: why; archive 5: why``."""
        return archive_problems(self.not_restored)


def is_archive_copy(path: str | Path) -> bool:
    """Whether ``path`` (a ``.srbk`` file or its manifest) claims to be an archive copy (its reader checks)."""
    try:
        return manifest_format(backup_and_manifest(path)[1]) == ARCHIVE_COPY_FORMAT
    except (BackupError, BackupInvalid):
        return False


def check_archive_copy(copy: ArchiveCopy, keys: BackupKeys, progress: BackupProgress,
                       sink: PlaintextSink | None = None) -> None:
    """Check a copy end to end (see the module docstring), decrypting into ``sink`` if given.

    Raises:
        BackupError: The copy cannot be read.
        BackupInvalid: It is altered, truncated, or does not decrypt to the archive its manifest names.
    """
    manifest = copy.manifest
    check_encrypted_file(copy.path, size=manifest.size, sha256=manifest.sha256, file_id=manifest.file_id,
                         progress=progress)
    plaintext = HashingWriter(sink)
    decrypt_backup(copy.path, plaintext, keys, progress)
    if plaintext.size != manifest.archive_bytes or plaintext.hexdigest() != manifest.archive_sha256:
        raise BackupInvalid(f"{copy.path.name} decrypts, but not to archive {manifest.archive} as recorded "
                            "(SHA-256 differs)")


def verify_archive_copies(records: Iterable[ArchiveRecord], directory: Path, keys: BackupKeys,
                          progress: BackupProgress) -> tuple[int, ...]:
    """Check the copy in ``directory`` of every archive a backup's database records; returns their numbers.

    Raises:
        BackupInvalid: An archive has no copy there, or its copy is damaged (every such archive is named).
    """
    found = copies_by_archive(directory, keys)
    verified: list[int] = []
    problems: list[str] = []
    for record in records:
        copy = found.get((record.number, record.sha256))
        if copy is None:
            problems.append(f"archive {record.number}: no copy of {record.file_name} in {directory}")
            continue
        try:
            check_archive_copy(copy, keys, progress)
        except (BackupError, BackupInvalid) as error:
            problems.append(f"archive {record.number}: {error}")
            continue
        verified.append(record.number)
    if problems:
        raise BackupInvalid("the audit archives this backup records cannot all be restored from their copies: "
                            + "; ".join(problems))
    return tuple(verified)


async def verify_archive_copy(
    settings: Settings,
    path: str | Path,
    *,
    progress: BackupProgress | None = None,
    keys: BackupKeys | None = None,
    record: bool = True,
) -> ArchiveCopy:
    """``backup verify`` of one archive copy: its manifest, the encrypted file, and the decrypted archive's SHA-256.

    Nothing is written in clear. Records a ``backup`` audit event unless ``record`` is false (outcome ``error``
    for every failure below).

    Raises:
        BackupError: A file is missing or unreadable.
        BackupRefused: Made with another backup key.
        BackupInvalid: The manifest was edited, or the copy is altered or truncated.
    """
    progress = progress or SilentProgress()
    encrypted, manifest_file = backup_and_manifest(path)
    try:
        keys = keys or load_backup_keys(settings)
        if not encrypted.is_file():
            raise BackupError(f"no archive copy {encrypted}")
        copy = ArchiveCopy(encrypted, read_archive_manifest(manifest_file, keys))
        check_archive_copy(copy, keys, progress)
    except Exception as error:
        if record:
            await record_backup_event_at(settings.resolved_database_url, action=AuditAction.BACKUP,
                                         outcome=AuditOutcome.ERROR,
                                         reason=f"verify of archive copy {encrypted.name} failed: "
                                                f"{failure_reason(error)}")
        raise
    if record:
        manifest = copy.manifest
        await record_backup_event_at(
            settings.resolved_database_url, action=AuditAction.BACKUP, file_id=manifest.file_id,
            reason=f"archive copy {encrypted.name} verified: archive {manifest.archive}",
            after={"file": encrypted.name, "archive": manifest.archive, "archive_sha256": manifest.archive_sha256})
    return copy


def _write_back(copy: ArchiveCopy, target: Path, keys: BackupKeys, progress: BackupProgress) -> None:
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    try:
        with create_private(partial) as handle:
            check_archive_copy(copy, keys, progress, sink=handle)
            os.fsync(handle.fileno())
        if target.exists():
            raise BackupError(f"{target.name} appeared in the archive directory meanwhile")
        partial.replace(target)
        fsync_directory(target.parent)
    finally:
        partial.unlink(missing_ok=True)


def _present(record: ArchiveRecord, target: Path, progress: BackupProgress) -> str | None:
    """None if ``target`` is the archive as recorded, else why it is not."""
    try:
        digest, size = sha256_of(target, progress)
    except BackupError as error:
        return str(error)
    if (digest, size) != (record.sha256, record.size):
        return f"{target.name} is in the archive directory but differs from its record (left as it is)"
    return None


def put_back_archives(records: Iterable[ArchiveRecord], backup_directory: Path, archive_directory: Path,
                      keys: BackupKeys, progress: BackupProgress) -> ArchivesPutBack:
    """Put every recorded archive missing from ``archive_directory`` back from its copy in ``backup_directory``.

    Never raises for one archive: each one that cannot be put back (no copy, a damaged copy, a differing file
    already there, an unwritable directory) is listed in ``not_restored`` with the reason.

    Raises:
        BackupError: The backup directory cannot be listed.
    """
    wanted = list(records)
    found = copies_by_archive(backup_directory, keys) if wanted else {}
    restored: list[int] = []
    present: list[int] = []
    not_restored: list[tuple[int, str]] = []
    try:
        make_directory_as_parent_owner(archive_directory, 0o700)
    except OSError as error:
        reason = f"the archive directory {archive_directory} cannot be created: {error.strerror}"
        return ArchivesPutBack((), (), tuple((record.number, reason) for record in wanted))
    for record in wanted:
        target = archive_directory / Path(record.file_name).name
        if target.exists():
            problem = _present(record, target, progress)
            if problem is None:
                present.append(record.number)
            else:
                not_restored.append((record.number, problem))
            continue
        copy = found.get((record.number, record.sha256))
        if copy is None:
            not_restored.append((record.number, f"no copy of {target.name} in {backup_directory}"))
            continue
        progress.phase(f"putting audit archive {record.number} back from {copy.path.name}")
        try:
            _write_back(copy, target, keys, progress)
        except (BackupError, BackupInvalid) as error:
            not_restored.append((record.number, f"its copy was refused: {error}"))
        except OSError as error:
            not_restored.append((record.number, f"cannot be written into {archive_directory}: {error.strerror}"))
        else:
            restored.append(record.number)
    return ArchivesPutBack(tuple(restored), tuple(present), tuple(not_restored))
