"""``strongroom backup create|verify|restore|prune``.

``add_backup_commands(commands)`` registers them on the ``strongroom`` parser's subparsers. Exit codes: 0 done
(verify: the backup is good), 1 the backup is bad or cannot be restored here (altered, truncated, newer schema,
another backup key; an audit archive file that could not be copied, or put back), 2 usage or I/O (missing file,
keys or tools, unreachable database, missing privilege; for ``verify --latest``, no database backup in the
directory; with ``--max-age``, a newest backup older than that is exit 1). Progress goes to standard error; the
result to standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from server.config import Settings
from server.ops.backup.errors import ArchivesUnprotected, BackupError, BackupInvalid, BackupRefused
from server.ops.backup.progress import BackupProgress, SilentProgress, StderrProgress, format_bytes

__all__ = ["add_backup_commands", "cmd_backup"]

EXIT_OK, EXIT_BAD, EXIT_USAGE = 0, 1, 2
_T = TypeVar("_T")


def _progress(args: argparse.Namespace) -> BackupProgress:
    return SilentProgress() if args.quiet else StderrProgress()


MAX_AGE_HOURS_LIMIT = 24 * 366 * 10


def _max_age_hours(text: str) -> int:
    try:
        hours = int(text)
    except ValueError:
        hours = 0
    if not 1 <= hours <= MAX_AGE_HOURS_LIMIT:
        raise argparse.ArgumentTypeError(f"HOURS is a whole number of hours, from 1 to {MAX_AGE_HOURS_LIMIT}")
    return hours


def _run(work: Callable[[], Awaitable[_T]]) -> _T:
    async def run() -> _T:
        return await work()

    return asyncio.run(run())


# The jobs are imported when a backup command runs, so that `strongroom --help` stays quick.


def _create(settings: Settings, args: argparse.Namespace) -> int:
    from server.ops.backup.create import create_backup

    out = Path(args.out) if args.out else None
    created = _run(lambda: create_backup(settings, out, progress=_progress(args)))
    manifest = created.manifest
    head = manifest.audit_head
    print(f"backup {created.path} ({format_bytes(manifest.size)}, sha256 {manifest.sha256})")
    print(f"manifest {created.manifest_path}: {manifest.database}, schema {manifest.schema_revision}, audit head "
          f"{head.seq if head else 'none'}, backup key {manifest.key_id}")
    archives = created.archives
    print(f"audit archives: {len(archives.copied)} copied, encrypted"
          + "".join(f" ({copy.path.name})" for copy in archives.copied)
          + f"; {len(archives.already_copied)} copied by earlier backups")
    if args.prune:
        return _prune(settings, argparse.Namespace(**{**vars(args), "dir": str(created.path.parent),
                                                     "dry_run": False}))
    return EXIT_OK


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from server.ops.backup.archive_recovery import is_archive_copy, verify_archive_copy
    from server.ops.backup.latest import find_latest_backup
    from server.ops.backup.verify import verify_backup

    if (args.dir is not None or args.max_age is not None) and not args.latest:
        print("strongroom: --dir and --max-age go with --latest (FILE names its own directory)", file=sys.stderr)
        return EXIT_USAGE
    target: str | Path = args.file
    if args.latest:
        directory = Path(args.dir) if args.dir else None
        max_age = timedelta(hours=args.max_age) if args.max_age is not None else None
        latest = _run(lambda: find_latest_backup(settings, directory, max_age=max_age))
        for path, why in latest.skipped:
            print(f"strongroom: warning: {path.name} passed over: {why}", file=sys.stderr)
        made = (f"made {latest.created_at:%Y-%m-%d %H:%M:%SZ}" if latest.authenticated
                else f"named for {latest.created_at:%Y-%m-%d %H:%M:%SZ}; its manifest does not authenticate")
        print(f"newest backup: {latest.backup} ({made})")
        target = latest.backup
    elif is_archive_copy(args.file):
        copy = _run(lambda: verify_archive_copy(settings, args.file, progress=_progress(args)))
        archive = copy.manifest
        print(f"archive copy OK: {copy.path.name}: checksum and manifest match; decrypts to audit archive "
              f"{archive.archive} (events {archive.first_seq}..{archive.last_seq}, sha256 {archive.archive_sha256})")
        return EXIT_OK
    scratch = Path(args.scratch_dir) if args.scratch_dir else None
    report = _run(lambda: verify_backup(settings, target, progress=_progress(args), scratch_dir=scratch))
    print(f"backup OK: {report.backup.name}: checksum, manifest and schema {report.manifest.schema_revision} match; "
          f"{report.trail_detail}" + (f"; {report.pending_sealed} pending events sealed in the scratch copy"
                                      if report.pending_sealed else "")
          + f"; {len(report.archives_verified)} audit archive copies verified")
    return EXIT_OK


def _restore(settings: Settings, args: argparse.Namespace) -> int:
    from server.ops.backup.restore import restore_backup

    if not args.yes:
        print("strongroom: restore replaces the whole configured database; stop the server (or point "
              "STRONGROOM_DATABASE_URL at a fresh database) and repeat with --yes", file=sys.stderr)
        return EXIT_USAGE
    report = _run(lambda: restore_backup(settings, args.file, progress=_progress(args)))
    print(f"restored {report.backup.name} (made {report.manifest.created_at:%Y-%m-%d %H:%M:%SZ}, schema "
          f"{report.manifest.schema_revision}); migrated to {report.schema_revision}")
    print(f"erasure ledger re-applied: {report.keys_destroyed_again} data keys destroyed again, "
          f"{report.customers_erased_again} customers erased again")
    if report.archived_checkpoint_sink is not None:
        print(f"checkpoint copies of the replaced trail kept as {report.archived_checkpoint_sink}")
    status = EXIT_OK
    if report.missing_kek_versions:
        print("strongroom: warning: the keyring lacks KEK version(s) "
              f"{', '.join(map(str, sorted(report.missing_kek_versions)))}: those customers' encrypted fields are "
              "unreadable until the keyring from the backup's time is restored", file=sys.stderr)
        status = EXIT_BAD
    print(("audit trail intact: " if report.trail_ok else "AUDIT TRAIL BROKEN: ") + report.trail_detail)
    archives = report.archives
    print(f"audit archives: {len(archives.restored)} put back from their copies, {len(archives.present)} already "
          "in place")
    if archives.not_restored:
        print("strongroom: warning: audit archive(s) "
              f"{', '.join(str(number) for number, _why in archives.not_restored)} NOT put back: "
              f"{archives.not_restored_summary()}", file=sys.stderr)
        status = EXIT_BAD
    return status if report.trail_ok else EXIT_BAD


def _prune(settings: Settings, args: argparse.Namespace) -> int:
    from server.ops.backup.prune import RetentionPolicy, prune_backups

    policy = RetentionPolicy(
        daily=settings.backup_keep_daily if args.keep_daily is None else args.keep_daily,
        weekly=settings.backup_keep_weekly if args.keep_weekly is None else args.keep_weekly,
        monthly=settings.backup_keep_monthly if args.keep_monthly is None else args.keep_monthly,
    )
    if min(policy.daily, policy.weekly, policy.monthly) < 0:
        print("strongroom: --keep-* values cannot be negative", file=sys.stderr)
        return EXIT_USAGE
    directory = Path(args.dir) if args.dir else None
    result = _run(lambda: prune_backups(settings, directory, policy=policy, dry_run=args.dry_run))
    verb = "would delete" if args.dry_run else "deleted"
    for entry in result.kept:
        print(f"keep    {entry.created_at:%Y-%m-%d %H:%M:%SZ}  {entry.backup.name}")
    for entry in result.deleted:
        print(f"{verb:<7} {entry.created_at:%Y-%m-%d %H:%M:%SZ}  {entry.backup.name}")
    for partial in result.removed_partials:
        print(f"{verb:<7} (interrupted)         {partial.name}")
    for path, why in result.skipped:
        print(f"skipped {path.name}: {why}", file=sys.stderr)
    print(f"{len(result.kept)} kept, {len(result.deleted)} {verb}"
          f" (policy: {policy.daily} daily, {policy.weekly} weekly, {policy.monthly} monthly); "
          f"{len(result.archive_copies)} audit archive copies kept (never pruned)")
    return EXIT_OK


_ACTIONS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "create": _create, "verify": _verify, "restore": _restore, "prune": _prune,
}


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    """Create, verify, restore or prune encrypted backups."""
    try:
        return _ACTIONS[args.backup_command](settings, args)
    except ArchivesUnprotected as error:
        print(f"strongroom: AUDIT ARCHIVES NOT PROTECTED: {error}", file=sys.stderr)
        return EXIT_BAD
    except BackupInvalid as error:
        print(f"strongroom: BACKUP BAD: {error}", file=sys.stderr)
        return EXIT_BAD
    except BackupRefused as error:
        print(f"strongroom: backup refused: {error}", file=sys.stderr)
        return EXIT_BAD
    except BackupError as error:
        print(f"strongroom: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (SQLAlchemyError, ConnectionError) as error:
        print(f"strongroom: cannot reach the database ({type(error).__name__})", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"strongroom: {error.filename or 'I/O'}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE


def add_backup_commands(commands: Any) -> None:
    """Register ``backup`` (create, verify, restore, prune) on ``commands``.

    Args:
        commands: The ``argparse`` subparsers object of the ``strongroom`` parser.
    """
    backup = commands.add_parser(
        "backup", help="encrypted backups: create, verify, restore, prune (exit 0 ok, 1 bad backup, 2 usage/I-O)")
    backup.set_defaults(handler=cmd_backup)
    actions = backup.add_subparsers(dest="backup_command", required=True, metavar="ACTION")

    def common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--quiet", action="store_true", help="no progress on standard error")
        return parser

    create = common(actions.add_parser(
        "create", help="snapshot the running database, encrypt it with the keyring's backup key, write a manifest; "
                       "copy (encrypted) every audit archive file not copied yet"))
    create.add_argument("--out", help="directory to write to (default STRONGROOM_BACKUP_DIR, <data_dir>/backups)")
    create.add_argument("--prune", action="store_true",
                        help="afterwards, apply the retention policy (STRONGROOM_BACKUP_KEEP_*) to that directory")
    create.set_defaults(keep_daily=None, keep_weekly=None, keep_monthly=None)

    verify = common(actions.add_parser(
        "verify", help="check manifest and checksum, restore into a scratch database, verify schema and audit chain "
                       "(of FILE, or of the newest backup with --latest)"))
    which = verify.add_mutually_exclusive_group(required=True)
    which.add_argument("file", nargs="?", metavar="FILE",
                       help="the backup file or an audit archive copy (or its .manifest.json)")
    which.add_argument("--latest", action="store_true",
                       help="instead of FILE: the newest database backup (by its authenticated manifest) in the "
                            "backup directory; exit 2 if there is none")
    verify.add_argument("--dir", help="with --latest: the backup directory (default STRONGROOM_BACKUP_DIR, "
                                      "<data_dir>/backups)")
    verify.add_argument("--max-age", type=_max_age_hours, metavar="HOURS",
                        help="with --latest: fail (exit 1, audited) if the newest backup is older than HOURS, so that "
                             "backups that stopped being taken are noticed")
    verify.add_argument("--scratch-dir", help="where an SQLite backup is decrypted (default: the temp directory)")

    restore = common(actions.add_parser(
        "restore", help="replace the configured database with a backup (stop the server first), migrate, "
                        "re-apply the erasure ledger, put missing audit archive files back"))
    restore.add_argument("file", help="the backup file (or its .manifest.json)")
    restore.add_argument("--yes", action="store_true", help="confirm: the configured database is replaced")

    prune = common(actions.add_parser(
        "prune", help="delete backups outside the retention policy (never audit archive copies)"))
    prune.add_argument("--dir", help="backup directory (default STRONGROOM_BACKUP_DIR, <data_dir>/backups)")
    prune.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    for period in ("daily", "weekly", "monthly"):
        prune.add_argument(f"--keep-{period}", type=int, metavar="N",
                           help=f"override STRONGROOM_BACKUP_KEEP_{period.upper()}")
