"""Audit events of backup operations: one per create, verify, restore and prune, recorded as the system."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import trail
from server.audit.tags import ActorType, AuditAction, AuditOutcome
from server.audit.trail import AuditActor
from server.db import create_engine, create_session_factory, write_transaction
from server.ops.backup.errors import ArchivesUnprotected, BackupError, BackupInvalid, BackupRefused

__all__ = ["BACKUP_ACTOR", "failure_reason", "record_backup_event", "record_backup_event_at"]

BACKUP_ACTOR: Final = AuditActor(type=ActorType.SYSTEM, id=None, name="strongroom backup")


def failure_reason(error: Exception) -> str:
    """Why an operation failed, fit for an event's reason and standard error.

    The backup errors' own messages, which name files and causes and never keys, URLs or row content; for an
    I/O error the file and the cause; for anything else (a database error may quote SQL and its values) only
    the kind of error.
    """
    if isinstance(error, BackupError | BackupInvalid | BackupRefused | ArchivesUnprotected):
        return str(error)
    if isinstance(error, OSError):
        cause = error.strerror or type(error).__name__
        return f"{error.filename}: {cause}" if error.filename else f"{type(error).__name__}: {cause}"
    return type(error).__name__


def _missing_sqlite_file(url: str) -> str | None:
    """The SQLite file ``url`` names if it does not exist (opening it would create an empty database)."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or Path(database).is_file():
        return None
    return database


async def record_backup_event(
    sessions: async_sessionmaker[AsyncSession],
    *,
    action: AuditAction,
    reason: str,
    outcome: AuditOutcome = AuditOutcome.OK,
    file_id: str | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """Record one event about a backup in its own write transaction (``entity`` is ``backup``, the id its file id).

    ``reason`` and ``after`` name files, checksums, revisions and counts: never keys or personal data.
    """
    async with sessions() as session, write_transaction(session):
        await trail.record(session, action=action, actor=BACKUP_ACTOR, entity="backup", entity_id=file_id,
                           reason=reason, outcome=outcome, after=after)


async def record_backup_event_at(
    url: str,
    *,
    action: AuditAction,
    reason: str,
    outcome: AuditOutcome = AuditOutcome.OK,
    file_id: str | None = None,
    after: Mapping[str, Any] | None = None,
) -> bool:
    """Like ``record_backup_event`` on the database at ``url``; a failure is reported on stderr, not raised.

    For events about an operation that failed or does not otherwise need the database (verify, a refused
    restore): the operation's own result must not be hidden by a second failure. An SQLite database that does
    not exist is not created just to hold the event (a restore run as root would leave it root's).

    Returns:
        Whether the event was recorded.
    """
    missing = _missing_sqlite_file(url)
    if missing is not None:
        print(f"strongroom: warning: the audit event was not recorded (no database at {missing})", file=sys.stderr)
        return False
    engine = create_engine(url)
    try:
        await record_backup_event(create_session_factory(engine), action=action, reason=reason, outcome=outcome,
                                  file_id=file_id, after=after)
    except Exception as error:  # noqa: BLE001 - reported, never hides the operation's own outcome
        print(f"strongroom: warning: the audit event was not recorded ({type(error).__name__})", file=sys.stderr)
        return False
    finally:
        await engine.dispose()
    return True
