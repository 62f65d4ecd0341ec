"""Recording audit events: one call, in the caller's transaction; the sealer chains them afterwards.

``record`` writes the event to ``audit_pending`` in the caller's transaction, so the event commits if and
only if the change it describes commits, and no lock is taken: concurrent transactions do not wait for one
another. The sealer (:mod:`server.audit.sealer`) then gives pending events their sequence numbers and
hashes in the order it finds them committed (the Trillian Tessera pattern). A sequence number is never taken
at insert time, because insert order is not commit order and a reader trusting "seq > last seen" would skip
rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, Required, TypedDict, Unpack, cast

from sqlalchemy import Table, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from server.audit.canonical import encode_event, format_timestamp
from server.audit.models import AuditPending
from server.audit.tags import ActorType, AuditAction, AuditOutcome
from server.domain.base import utc_now

_commit_listeners: list[Callable[[], None]] = []


def on_event_committed(listener: Callable[[], None]) -> None:
    """Call ``listener`` after every commit that wrote an event in this process (the sealer wakes on it)."""
    _commit_listeners.append(listener)


def off_event_committed(listener: Callable[[], None]) -> None:
    """Stop calling ``listener``."""
    _commit_listeners.remove(listener)


# Set in a session's info by :func:`write_pending`; a commit that finds it wakes the listeners. One listener
# for every session, registered once, instead of an event registration on each session that writes an event.
_WROTE_EVENTS: Final = "strongroom_wrote_audit_events"
_PENDING: Final = cast(Table, AuditPending.__table__)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if session.info.pop(_WROTE_EVENTS, False):
        for listener in _commit_listeners:
            listener()


# The sequence number written into a pending event's canonical bytes until the sealer puts the real one in
# its place (:func:`server.audit.sealer.with_seq`).
PLACEHOLDER_SEQ = 1


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


def pending_event(
    *,
    action: AuditAction,
    actor: AuditActor,
    entity: str | None = None,
    entity_id: str | uuid.UUID | None = None,
    subject_id: str | uuid.UUID | None = None,
    subjects: Iterable[str | uuid.UUID] = (),
    fields: Iterable[str] = (),
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    outcome: AuditOutcome = AuditOutcome.OK,
    reason: str | None = None,
    request: RequestInfo | None = None,
) -> dict[str, Any]:
    """One event as an ``audit_pending`` row, timestamped now and canonically encoded (so validated).

    ``subject_id`` is the data subject (customer) the event is about; ``subjects`` names further ones for an
    event about several (a list or an export).
    """
    moment = utc_now()
    touched = sorted(set(fields))
    request = request or RequestInfo()
    entity_key = str(entity_id) if entity_id is not None else None
    canonical = encode_event({
        "seq": PLACEHOLDER_SEQ,
        "ts": format_timestamp(moment),
        "actor_type": actor.type.value,
        "actor_id": actor.id,
        "actor_name": actor.name,
        "actor_roles": list(actor.roles),
        "action": action.value,
        "entity": entity,
        "entity_id": entity_key,
        "fields": touched,
        "before": audit_value(before) if before is not None else None,
        "after": audit_value(after) if after is not None else None,
        "outcome": outcome.value,
        "request_id": request.request_id,
        "client_address": request.client_address,
        "user_agent": request.user_agent,
        "reason": reason,
    })
    return {"ts": moment, "actor_id": actor.id, "action": action.value, "entity": entity, "entity_id": entity_key,
            "subject_id": str(subject_id) if subject_id is not None else None, "outcome": outcome.value,
            "fields": " ".join(touched),
            "subjects": " ".join(sorted({str(item) for item in subjects} - {str(subject_id)})),
            "canonical": canonical}


async def write_pending(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert pending events in ``session``'s current transaction; the sealer is woken when it commits."""
    session.sync_session.info[_WROTE_EVENTS] = True
    await session.execute(insert(_PENDING), rows)


class EventDetails(TypedDict, total=False):
    """The keyword arguments of :func:`pending_event`, for functions that pass them on."""

    action: Required[AuditAction]
    actor: Required[AuditActor]
    entity: str | None
    entity_id: str | uuid.UUID | None
    subject_id: str | uuid.UUID | None
    subjects: Iterable[str | uuid.UUID]
    fields: Iterable[str]
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    outcome: AuditOutcome
    reason: str | None
    request: RequestInfo | None


async def record(session: AsyncSession, **details: Unpack[EventDetails]) -> None:
    """Write one event (:func:`pending_event`'s arguments) in ``session``'s current transaction.

    The event commits if and only if the caller's transaction commits; the sealer chains it afterwards. A
    value the canonical form refuses fails the caller's transaction, not the sealer.
    """
    await write_pending(session, [pending_event(**details)])
