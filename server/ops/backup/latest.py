"""``backup verify --latest``: which file in a backup directory is the newest database backup.

Backups are ordered as ``backup prune`` orders them: by the creation time in each manifest that authenticates
with this keyring's backup key, never by modification times, which anyone can change. Copies of audit archive
files are not database backups and are never chosen, however new.

A file named as ``backup create`` names backups (``strongroom-<UTC time>-<id>.srbk``, or its manifest alone)
whose manifest is missing, edited or made with another backup key is a candidate too, at the time in its name.
If it is the newest, it is the one verified, and the verification fails: falling back to an older, good backup
would report the newest backup's damage as a success.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from server.audit.tags import AuditAction, AuditOutcome
from server.config import Settings
from server.domain.base import utc_now
from server.ops.backup.encryption import BackupKeys
from server.ops.backup.errors import BackupError, BackupInvalid
from server.ops.backup.events import failure_reason, record_backup_event_at
from server.ops.backup.keys import load_backup_keys
from server.ops.backup.manifest import BACKUP_SUFFIX, MANIFEST_SUFFIX
from server.ops.backup.prune import scan_backups

__all__ = ["LatestBackup", "find_latest_backup", "newest_backup"]

# The name `backup create` gives a backup (server/ops/backup/create.py): its UTC creation time, to the second.
_BACKUP_NAME: Final = re.compile(r"strongroom-(\d{8}T\d{6}Z)-[0-9a-f]+" + re.escape(BACKUP_SUFFIX))


@dataclass(frozen=True, slots=True)
class LatestBackup:
    """The newest database backup in a directory, and the backup-like files passed over.

    ``created_at`` comes from the authenticated manifest, or from the file name where ``authenticated`` is false
    (the manifest is missing, edited or made with another backup key: verifying the file will say which).
    ``skipped`` lists the other files that look like backups but did not authenticate, with why.
    """

    backup: Path
    created_at: datetime
    authenticated: bool
    skipped: tuple[tuple[Path, str], ...]


def _named_time(path: Path) -> datetime | None:
    """The creation time in a backup's (or its manifest's) name, if it is named as ``backup create`` names them."""
    match = _BACKUP_NAME.fullmatch(path.name.removesuffix(MANIFEST_SUFFIX))
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _unauthenticated_candidates(skipped: Iterable[tuple[Path, str]]) -> list[tuple[datetime, Path]]:
    candidates: list[tuple[datetime, Path]] = []
    for path, _why in skipped:
        moment = _named_time(path)
        if moment is not None:
            candidates.append((moment, path.with_name(path.name.removesuffix(MANIFEST_SUFFIX))))
    return candidates


def newest_backup(directory: Path, keys: BackupKeys) -> LatestBackup | None:
    """The newest database backup in ``directory`` (see the module docstring), or None if there is none.

    Raises:
        BackupError: The directory cannot be listed.
    """
    entries, skipped = scan_backups(directory, keys)
    candidates = [(entry.created_at, entry.backup.name, True, entry.backup) for entry in entries]
    candidates += [(moment, path.name, False, path) for moment, path in _unauthenticated_candidates(skipped)]
    if not candidates:
        return None
    # The newest time wins; within one second, the name decides, so that the choice never depends on listing order.
    created_at, _name, authenticated, backup = max(candidates)
    passed_over = tuple((path, why) for path, why in skipped
                        if path.with_name(path.name.removesuffix(MANIFEST_SUFFIX)) != backup)
    return LatestBackup(backup=backup, created_at=created_at, authenticated=authenticated, skipped=passed_over)


async def find_latest_backup(
    settings: Settings,
    directory: Path | None = None,
    *,
    keys: BackupKeys | None = None,
    record: bool = True,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> LatestBackup:
    """The newest database backup in the backup directory, for ``backup verify --latest``.

    Args:
        settings: The keyring (to authenticate manifests), the database (audit event), the default directory.
        directory: Default ``settings.resolved_backup_dir``, where ``backup create`` and ``prune`` work.
        keys: The backup keys; by default from the configured keyring.
        record: Record a ``backup`` audit event with outcome ``error`` when there is no backup to verify, only a
            stale one, or the keyring or directory cannot be read (a failure to record is reported on stderr and
            does not change the outcome).
        max_age: The newest backup must be younger than this (backups that stopped being taken fail the check,
            however good the last one was).
        now: The time ``max_age`` is measured from; default now.

    Raises:
        BackupError: The keyring or the directory cannot be read, or the directory holds no database backup
            (nothing was verified: exit 2, like a missing file).
        BackupInvalid: The newest backup is older than ``max_age`` (exit 1: there is no current backup).
    """
    directory = directory if directory is not None else settings.resolved_backup_dir
    try:
        latest = newest_backup(directory, keys or load_backup_keys(settings))
        if latest is None:
            raise BackupError(f"no database backup to verify in {directory}")
        if max_age is not None and (age := (now or utc_now()) - latest.created_at) > max_age:
            raise BackupInvalid(
                f"the newest backup in {directory}, {latest.backup.name}, was made "
                f"{latest.created_at:%Y-%m-%d %H:%M:%SZ}, {_hours(age)} ago, more than the {_hours(max_age)} allowed: "
                "backups are no longer being taken")
    except Exception as failure:
        if record:
            await record_backup_event_at(settings.resolved_database_url, action=AuditAction.BACKUP,
                                         outcome=AuditOutcome.ERROR,
                                         reason=f"verify of the newest backup failed: {failure_reason(failure)}")
        raise
    return latest


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:.1f} h"
