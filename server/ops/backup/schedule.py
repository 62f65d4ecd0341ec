"""The backup schedule ``strongroom serve`` runs for the single-server case (``STRONGROOM_BACKUP_SCHEDULE``).

At each due time: ``backup create`` into the backup directory (audit archive files included), then ``backup
prune``, which is skipped when an archive file could not be copied (older backups may hold its events). A
failure is logged and the loop waits for the next due time; a run that overran later due times skips them.
Every worker process runs the loop; a lock file and a record of the last due time run, both in the backup
directory, let exactly one of them take each backup.

Where a systemd timer or a Kubernetes CronJob takes the backups, leave the schedule ``off``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Final

import structlog

from server.config import Settings, backup_schedule_parts
from server.ops.backup.create import create_backup
from server.ops.backup.errors import ArchivesUnprotected, BackupError, BackupInvalid, BackupRefused
from server.ops.backup.files import prepare_directory
from server.ops.backup.prune import prune_backups

__all__ = ["next_due", "run_backup_schedule", "run_schedule", "run_scheduled_backup"]

log = structlog.get_logger("strongroom.backup")

LOCK_FILE: Final = ".schedule.lock"
LAST_RUN_FILE: Final = ".schedule-last-run"
MAX_SLEEP_SECONDS: Final = 300.0  # wake up now and then: the wall clock may jump (NTP, suspend)

Job = Callable[[Settings], Awaitable[None]]


def next_due(schedule: str, after: datetime, tz: tzinfo | None = None) -> datetime | None:
    """The first due time of ``schedule`` strictly after ``after`` (aware), or None when it is ``off``.

    Times in the schedule are wall-clock times in ``tz`` (default: the server's local time zone).
    """
    parts = backup_schedule_parts(schedule)
    if parts is None:
        return None
    kind, weekday, hour, minute = parts
    local = after.astimezone(tz).replace(tzinfo=None)
    if kind == "hourly":
        candidate, step = local.replace(minute=minute, second=0, microsecond=0), timedelta(hours=1)
    else:
        candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        step = timedelta(days=1 if kind == "daily" else 7)
        if weekday is not None:
            candidate += timedelta(days=(weekday - candidate.weekday()) % 7)

    def aware(moment: datetime) -> datetime:
        return moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()

    while aware(candidate) <= after:
        candidate += step
    return aware(candidate)


async def run_scheduled_backup(settings: Settings) -> None:
    """One scheduled run: ``backup create`` into the backup directory, then ``backup prune``."""
    created = await create_backup(settings)
    pruned = await prune_backups(settings)
    log.info("backup_created", file=created.path.name, size=created.manifest.size,
             pruned=len(pruned.deleted), kept=len(pruned.kept))


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[bool]:
    """Hold the schedule lock of ``directory`` if no other process does; yields whether it is held."""
    prepare_directory(directory)
    descriptor = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)


def _last_run(directory: Path) -> datetime | None:
    try:
        return datetime.fromisoformat((directory / LAST_RUN_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _mark_run(directory: Path, due: datetime) -> None:
    path = directory / LAST_RUN_FILE
    path.with_suffix(".tmp").write_text(due.astimezone(UTC).isoformat() + "\n")
    path.with_suffix(".tmp").replace(path)


async def _run_once(settings: Settings, directory: Path, due: datetime, job: Job) -> bool:
    with _exclusive(directory) as held:
        if not held:
            return False  # another worker is running this one
        last = _last_run(directory)
        if last is not None and last >= due:
            return False  # another worker already ran it
        _mark_run(directory, due)
        await job(settings)
        return True


async def run_backup_schedule(
    settings: Settings,
    *,
    job: Job = run_scheduled_backup,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    tz: tzinfo | None = None,
) -> None:
    """Run ``job`` (create, then prune) at every due time of ``settings.backup_schedule`` until cancelled.

    Returns at once when the schedule is ``off``. Failures are logged (``backup_schedule_failed``) and the loop
    goes on; cancellation (server shutdown) stops it, also in the middle of a backup, which then leaves no file.

    Args:
        settings: The schedule, the backup directory and everything ``backup create`` needs.
        job: One run (tests replace it).
        clock: Now, aware (tests replace it).
        sleep: Waits that many seconds (tests replace it).
        tz: Time zone of the schedule's times (default: the server's local time zone).
    """
    await run_schedule("backup", settings.backup_schedule, settings.resolved_backup_dir, settings, job=job,
                       clock=clock, sleep=sleep, tz=tz)


async def run_schedule(
    name: str,
    schedule: str,
    directory: Path,
    settings: Settings,
    *,
    job: Job,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    tz: tzinfo | None = None,
) -> None:
    """Run ``job`` at every due time of ``schedule`` until cancelled; ``directory`` holds the lock and the
    record of the last due time run, so that one worker of several runs each. Logs ``<name>_schedule_*``."""
    due = next_due(schedule, clock(), tz)
    if due is None:
        return
    log.info(f"{name}_schedule_started", schedule=schedule, next_due=due.isoformat())
    while True:
        now = clock()
        if now < due:
            await sleep(min((due - now).total_seconds(), MAX_SLEEP_SECONDS))
            continue
        try:
            await _run_once(settings, directory, due, job)
        except asyncio.CancelledError:
            raise
        # No tracebacks in these logs: an unexpected error's text could quote SQL parameters (personal data).
        except (BackupError, BackupInvalid, BackupRefused, ArchivesUnprotected) as error:
            log.error(f"{name}_schedule_failed", due=due.isoformat(), error=str(error))  # noqa: TRY400
        except Exception as error:  # noqa: BLE001 - the schedule outlives a failed run; the next one retries
            log.error(f"{name}_schedule_failed", due=due.isoformat(), error_type=type(error).__name__)  # noqa: TRY400
        following = next_due(schedule, max(clock(), due), tz)
        if following is None:  # pragma: no cover - the schedule cannot change while running
            return
        due = following
