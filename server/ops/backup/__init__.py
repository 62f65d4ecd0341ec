"""Backups: ``strongroom backup create|verify|restore|prune`` and the schedule ``strongroom serve`` can run.

One module per job: ``encryption`` (the streaming AEAD file format), ``manifest`` (the authenticated description
beside each file), ``sqlite`` and ``postgres`` (each database's snapshot and restore tools), ``create``,
``verify`` (``latest`` picks the newest backup for ``verify --latest``), ``restore``, ``prune`` and ``schedule``;
``archive_copies`` (encrypted copies of audit archive files, made by ``create``), ``archive_manifest`` (their
manifests) and ``archive_recovery`` (their checks in ``verify`` and their return in ``restore``). The CLI wiring
is ``server/ops/backup_cli.py``.
"""

from __future__ import annotations

from server.ops.backup.create import CreatedBackup, create_backup
from server.ops.backup.encryption import BackupKeys, decrypt_stream, encrypt_stream
from server.ops.backup.errors import ArchivesUnprotected, BackupError, BackupInvalid, BackupRefused
from server.ops.backup.latest import LatestBackup, find_latest_backup
from server.ops.backup.manifest import AuditHead, Manifest, backup_and_manifest, read_manifest
from server.ops.backup.progress import BackupProgress, SilentProgress, StderrProgress
from server.ops.backup.prune import PruneResult, RetentionPolicy, prune_backups, select_kept
from server.ops.backup.restore import RestoreReport, restore_backup
from server.ops.backup.schedule import next_due, run_backup_schedule
from server.ops.backup.verify import VerifyReport, verify_backup

__all__ = [
    "ArchivesUnprotected",
    "AuditHead",
    "BackupError",
    "BackupInvalid",
    "BackupKeys",
    "BackupProgress",
    "BackupRefused",
    "CreatedBackup",
    "LatestBackup",
    "Manifest",
    "PruneResult",
    "RestoreReport",
    "RetentionPolicy",
    "SilentProgress",
    "StderrProgress",
    "VerifyReport",
    "backup_and_manifest",
    "create_backup",
    "decrypt_stream",
    "encrypt_stream",
    "find_latest_backup",
    "next_due",
    "prune_backups",
    "read_manifest",
    "restore_backup",
    "run_backup_schedule",
    "select_kept",
    "verify_backup",
]
