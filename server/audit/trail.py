"""Recording audit events: one call, in the caller's transaction, chained to the previous event.

The chain head is read and extended under a lock that lasts until the caller's transaction ends, so the
event and the change it describes commit together, in chain order, with no fork and no gap:

- PostgreSQL: ``pg_advisory_xact_lock`` (transaction-scoped, never the session-level variant, so it cannot
  leak past a transaction). Services call ``record`` last in their transaction, so the lock is held only
  for the audit insert and the commit. Sequence numbers are assigned here, not by a database sequence,
  because sequence values commit out of order and a reader trusting "id > last seen" would skip rows.
- SQLite: the caller's transaction already holds the database write lock (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.canonical import encode_event, format_timestamp
from server.audit.chain import GENESIS_HASH, seal_event
from server.audit.models import AuditEventField, AuditEventRecord
from server.audit.tags import ActorType, AuditAction, AuditOutcome
from server.domain.base import utc_now

# An arbitrary, fixed 64-bit key naming "the audit chain head" among advisory locks.
CHAIN_LOCK_KEY = 0x5354524F4E47  # "STRONG"


@dataclass(frozen=True, slots=True)
class AuditActor:
    """Who acted, as the trail records it."""

    type: ActorType
    id: str | None
    name: str | None
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """Where a request came from; filled by the HTTP layer, absent for command-line jobs."""

    request_id: str | None = None
    client_address: str | None = None
    user_agent: str | None = None


def audit_value(value: Any) -> Any:
    """A value in the form the canonical encoding accepts (no floats; ids, times and money as strings)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [audit_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): audit_value(item) for key, item in value.items()}
    return str(value)


async def record(
    session: AsyncSession,
    *,
    action: AuditAction,
    actor: AuditActor,
    entity: str | None = None,
    entity_id: str | uuid.UUID | None = None,
    subject_id: str | uuid.UUID | None = None,
    fields: Iterable[str] = (),
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    outcome: AuditOutcome = AuditOutcome.OK,
    reason: str | None = None,
    request: RequestInfo | None = None,
) -> int:
    """Append one event in ``session``'s current transaction and return its sequence number.

    Call it last in the transaction: on PostgreSQL it holds the chain lock until commit.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    head = (await session.execute(
        select(AuditEventRecord.seq, AuditEventRecord.hash).order_by(AuditEventRecord.seq.desc()).limit(1)
    )).first()
    seq, prev_hash = (head[0] + 1, bytes(head[1])) if head else (1, GENESIS_HASH)
    moment = utc_now()
    touched = sorted(set(fields))
    request = request or RequestInfo()
    canonical = encode_event({
        "seq": seq,
        "ts": format_timestamp(moment),
        "actor_type": actor.type.value,
        "actor_id": actor.id,
        "actor_name": actor.name,
        "actor_roles": list(actor.roles),
        "action": action.value,
        "entity": entity,
        "entity_id": str(entity_id) if entity_id is not None else None,
        "fields": touched,
        "before": audit_value(before) if before is not None else None,
        "after": audit_value(after) if after is not None else None,
        "outcome": outcome.value,
        "request_id": request.request_id,
        "client_address": request.client_address,
        "user_agent": request.user_agent,
        "reason": reason,
    })
    session.add(AuditEventRecord(
        seq=seq, ts=moment, actor_id=actor.id, action=action.value, entity=entity,
        entity_id=str(entity_id) if entity_id is not None else None,
        subject_id=str(subject_id) if subject_id is not None else None, outcome=outcome.value,
        canonical=canonical, prev_hash=prev_hash, hash=seal_event(prev_hash, seq, canonical),
    ))
    await session.flush()
    if touched:
        session.add_all([AuditEventField(seq=seq, field=name) for name in touched])
        await session.flush()
    return seq
