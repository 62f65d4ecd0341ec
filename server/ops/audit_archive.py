"""The audit archive schedule ``strongroom serve`` runs (``STRONGROOM_AUDIT_ARCHIVE_SCHEDULE``).

At each due time it does what ``strongroom audit archive`` does: every expired event that no legal hold keeps
is written to a verifiable archive file with its checkpoint, then leaves the database, and the archiving is
itself an audit event. Every worker process runs the loop; a lock file and a record of the last due time run,
both in the archive directory, let exactly one of them archive each time. Failures are logged and retried at the
next due time. A schedule that can never succeed, on PostgreSQL a login without the schema owner's rights (the
runtime role), stops ``strongroom serve`` before it starts (:func:`refuse_schedule_without_rights`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, tzinfo

import structlog

from server.audit import retention
from server.audit.store import load_or_create_audit_key
from server.config import Settings
from server.db import create_engine, create_session_factory
from server.errors import StrongroomError
from server.ops.backup.schedule import run_schedule
from server.security.principal import system_principal
from server.services.records import actor_of

__all__ = ["refuse_schedule_without_rights", "run_archive_schedule", "run_scheduled_archive"]

log = structlog.get_logger("strongroom.audit")


async def run_scheduled_archive(settings: Settings, *, now: datetime | None = None) -> None:
    """One scheduled run: archive every expired, un-held event (``now``: expiry as of that moment, for tests)."""
    signing_key = load_or_create_audit_key(settings.resolved_keys_dir, create=False)
    directory = retention.archive_dir(settings.data_dir, settings.audit_archive_dir)
    engine = create_engine(settings.resolved_database_url)
    try:
        async with create_session_factory(engine)() as session:
            async for outcome in retention.archive_expired(
                    session, signing_key=signing_key, directory=directory,
                    retention_days=settings.audit_retention_days, actor=actor_of(system_principal("audit schedule")),
                    max_events=settings.audit_archive_max_events, sink=settings.resolved_checkpoint_sink, now=now):
                if isinstance(outcome, retention.ArchivePlan):
                    log.info("audit_archive_done", retained_from_seq=outcome.first_seq, stopped_by=outcome.stopped_by)
                else:
                    details = outcome.details
                    log.info("audit_archived", archive=details["archive"], first_seq=details["first_seq"],
                             last_seq=details["last_seq"], events=details["events"], file=outcome.path.name)
    finally:
        await engine.dispose()


async def run_archive_schedule(
    settings: Settings,
    *,
    job: Callable[[Settings], Awaitable[None]] = run_scheduled_archive,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    tz: tzinfo | None = None,
) -> None:
    """Archive at every due time of ``settings.audit_archive_schedule`` until cancelled; returns at once when
    it is ``off``. Failures are logged (``audit_archive_schedule_failed``) and the loop goes on."""
    directory = retention.archive_dir(settings.data_dir, settings.audit_archive_dir)
    await run_schedule("audit_archive", settings.audit_archive_schedule, directory, settings, job=job, clock=clock,
                       sleep=sleep, tz=tz)


def refuse_schedule_without_rights(settings: Settings) -> None:
    """Raise if ``STRONGROOM_AUDIT_ARCHIVE_SCHEDULE`` is on but the database login may not archive.

    Raises:
        StrongroomError: The schedule would fail at every due time; the message says how to archive instead.
    """
    if settings.audit_archive_schedule == "off":
        return

    async def check() -> bool:
        engine = create_engine(settings.resolved_database_url)
        try:
            async with create_session_factory(engine)() as session:
                return await retention.may_archive(session)
        finally:
            await engine.dispose()

    if not asyncio.run(check()):
        raise StrongroomError(f"STRONGROOM_AUDIT_ARCHIVE_SCHEDULE is set, but {retention.ARCHIVE_NEEDS_OWNER}; "
                              "leave the schedule `off` on this server")
