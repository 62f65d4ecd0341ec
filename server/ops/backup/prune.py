"""``backup prune``: keep the newest backup of each of the last N days, weeks and months; delete the rest.

The policy (as restic's ``--keep-daily/--keep-weekly/--keep-monthly``): going from the newest backup to the
oldest, the first backup of each UTC day is kept until ``daily`` days are covered, likewise ISO weeks for
``weekly`` and months for ``monthly``; a backup kept by any rule stays. The newest backup is always kept.

Only backups whose manifest authenticates with this keyring's backup key are considered, and their creation
times come from those manifests (not from file names or modification times, which anyone can change). A file
that is not such a pair is reported and left alone; so is anything else in the directory, except the
``*.partial`` leftovers of an interrupted ``backup create`` older than a day, which are removed.

Copies of audit archive files (:mod:`server.ops.backup.archive_copies`) are never deleted: a newer backup does
not supersede them, because each holds events that have left the database. They are listed as kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from server.audit.tags import AuditAction, AuditOutcome
from server.config import Settings
from server.ops.backup.archive_copies import authenticated_copies, scan_archive_copies
from server.ops.backup.encryption import BackupKeys
from server.ops.backup.errors import BackupError, BackupInvalid, BackupRefused
from server.ops.backup.events import failure_reason, record_backup_event_at
from server.ops.backup.files import PARTIAL_SUFFIX, fsync_directory
from server.ops.backup.keys import load_backup_keys
from server.ops.backup.manifest import BACKUP_SUFFIX, MANIFEST_SUFFIX, manifest_path, read_manifest

__all__ = ["BackupEntry", "PruneResult", "RetentionPolicy", "prune_backups", "scan_backups", "select_kept"]

STALE_PARTIAL_SECONDS: Final = 24 * 3600


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How many recent days, ISO weeks and months keep their newest backup."""

    daily: int = 7
    weekly: int = 4
    monthly: int = 12

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        """``backup_keep_daily``, ``backup_keep_weekly``, ``backup_keep_monthly``."""
        return cls(settings.backup_keep_daily, settings.backup_keep_weekly, settings.backup_keep_monthly)


@dataclass(frozen=True, slots=True)
class BackupEntry:
    """One authenticated backup: its creation time (UTC, from the manifest), the file and the manifest."""

    created_at: datetime
    backup: Path
    manifest: Path


@dataclass(slots=True)
class PruneResult:
    """What prune kept, deleted (or would delete, on a dry run) and left alone; archive copies are always kept."""

    kept: list[BackupEntry] = field(default_factory=list)
    deleted: list[BackupEntry] = field(default_factory=list)
    archive_copies: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    removed_partials: list[Path] = field(default_factory=list)


def _newest_per_bucket(entries: list[BackupEntry], count: int,
                       bucket: Callable[[datetime], Hashable]) -> Iterable[BackupEntry]:
    seen: set[Hashable] = set()
    for entry in entries:
        if len(seen) >= count:
            return
        key = bucket(entry.created_at)
        if key not in seen:
            seen.add(key)
            yield entry


def select_kept(entries: Iterable[BackupEntry], policy: RetentionPolicy) -> set[Path]:
    """The backup files the policy keeps (see the module docstring)."""
    newest_first = sorted(entries, key=lambda entry: (entry.created_at, entry.backup.name), reverse=True)
    if not newest_first:
        return set()
    kept = {newest_first[0].backup}
    rules: tuple[tuple[int, Callable[[datetime], Hashable]], ...] = (
        (policy.daily, lambda moment: moment.date()),
        (policy.weekly, lambda moment: moment.isocalendar()[:2]),
        (policy.monthly, lambda moment: (moment.year, moment.month)),
    )
    for count, bucket in rules:
        kept.update(entry.backup for entry in _newest_per_bucket(newest_first, count, bucket))
    return kept


def scan_backups(directory: Path, keys: BackupKeys, archive_copies: Iterable[Path] | None = None,
                 ) -> tuple[list[BackupEntry], list[tuple[Path, str]]]:
    """The authenticated database backups in ``directory``, and (path, why) for every backup-like file left alone
    (archive copies are neither; ``archive_copies``: those ``scan_archive_copies`` found, if the caller has them)."""
    entries: list[BackupEntry] = []
    skipped: list[tuple[Path, str]] = []
    archive_copies = set(scan_archive_copies(directory) if archive_copies is None else archive_copies)
    try:
        names = sorted(path for path in directory.iterdir() if path.is_file())
    except FileNotFoundError:
        return [], []
    except OSError as error:
        raise BackupError(f"cannot list {directory}: {error.strerror}") from None
    for path in names:
        if path.name.endswith(MANIFEST_SUFFIX):
            if not path.with_name(path.name.removesuffix(MANIFEST_SUFFIX)).is_file():
                skipped.append((path, "manifest without its backup file"))
            continue
        if not path.name.endswith(BACKUP_SUFFIX) or path in archive_copies:
            continue
        try:
            manifest = read_manifest(manifest_path(path), keys)
        except (BackupError, BackupInvalid, BackupRefused) as error:
            skipped.append((path, str(error)))
            continue
        entries.append(BackupEntry(created_at=manifest.created_at, backup=path, manifest=manifest_path(path)))
    return entries, skipped


def _stale_partials(directory: Path, now: float) -> list[Path]:
    try:
        return [path for path in directory.iterdir() if path.name.endswith(PARTIAL_SUFFIX) and path.is_file()
                and now - path.stat().st_mtime > STALE_PARTIAL_SECONDS]
    except FileNotFoundError:
        return []


def _plan(directory: Path, keys: BackupKeys, policy: RetentionPolicy) -> PruneResult:
    """What the policy keeps and deletes in ``directory``, and what is left alone (see the module docstring)."""
    claimed_copies = scan_archive_copies(directory)
    entries, skipped = scan_backups(directory, keys, claimed_copies)
    kept = select_kept(entries, policy)
    copies, rejected = authenticated_copies(claimed_copies, keys)
    result = PruneResult(skipped=skipped + rejected, archive_copies=[copy.path for copy in copies])
    for entry in sorted(entries, key=lambda item: item.created_at, reverse=True):
        (result.kept if entry.backup in kept else result.deleted).append(entry)
    result.removed_partials = _stale_partials(directory, time.time())
    return result


def _delete(result: PruneResult, directory: Path, deleted: list[str]) -> None:
    """Delete what ``result`` plans to, appending each file's name to ``deleted`` once it is gone."""
    try:
        for entry in result.deleted:
            entry.backup.unlink(missing_ok=True)
            entry.manifest.unlink(missing_ok=True)
            deleted.append(entry.backup.name)
        for partial in result.removed_partials:
            partial.unlink(missing_ok=True)
            deleted.append(partial.name)
    except OSError as error:
        raise BackupError(f"cannot delete {error.filename} in {directory}: {error.strerror}") from None
    if deleted:
        fsync_directory(directory)


async def prune_backups(
    settings: Settings,
    directory: Path | None = None,
    *,
    policy: RetentionPolicy | None = None,
    dry_run: bool = False,
    keys: BackupKeys | None = None,
) -> PruneResult:
    """Apply the retention policy to a backup directory; record a ``backup`` audit event unless ``dry_run``.

    A prune that fails records an event with outcome ``error``, naming the files it had deleted by then.

    Args:
        settings: The keyring (to authenticate manifests), the database (audit event), the defaults.
        directory: Default ``settings.resolved_backup_dir``.
        policy: Default from the settings.
        dry_run: Only report what would be deleted.
        keys: The backup keys; by default from the configured keyring.

    Raises:
        BackupError: The keyring or the directory cannot be read, or a file cannot be deleted.
    """
    directory = directory if directory is not None else settings.resolved_backup_dir
    policy = policy or RetentionPolicy.from_settings(settings)
    deleted: list[str] = []
    try:
        result = _plan(directory, keys or load_backup_keys(settings), policy)
        if dry_run:
            return result
        _delete(result, directory, deleted)
    except Exception as error:
        if not dry_run:
            await record_backup_event_at(
                settings.resolved_database_url, action=AuditAction.BACKUP, outcome=AuditOutcome.ERROR,
                reason=f"prune of {directory} failed after {len(deleted)} deletion(s): {failure_reason(error)}",
                after={"deleted": deleted})
        raise
    await record_backup_event_at(
        settings.resolved_database_url, action=AuditAction.BACKUP,
        reason=f"backups pruned (keep {policy.daily} daily, {policy.weekly} weekly, {policy.monthly} monthly): "
               f"{len(result.deleted)} deleted, {len(result.kept)} kept, {len(result.archive_copies)} audit archive "
               "copies kept (never pruned)",
        after={"deleted": [entry.backup.name for entry in result.deleted],
               "kept": [entry.backup.name for entry in result.kept],
               "archive_copies_kept": len(result.archive_copies)},
    )
    return result
