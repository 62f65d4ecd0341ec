"""Audit events of backup operations: one per create, verify, restore and prune, recorded as the system."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import trail
from server.audit.tags import ActorType, AuditAction, AuditOutcome
from server.audit.trail import AuditActor
from server.db import create_engine, create_session_factory, write_transaction

__all__ = ["BACKUP_ACTOR", "record_backup_event", "record_backup_event_at"]

BACKUP_ACTOR: Final = AuditActor(type=ActorType.SYSTEM, id=None, name="strongroom backup")


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
    restore): the operation's own result must not be hidden by a second failure.

    Returns:
        Whether the event was recorded.
    """
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
