"""Service rules: SLA due times from priority, and the status flow."""

from __future__ import annotations

from datetime import datetime, timedelta

from server.domain.service_records.models import Priority, ServiceRecord, ServiceStatus
from server.errors import InvalidInput, InvalidTransition

# (first response, resolution) per priority.
SLA: dict[Priority, tuple[timedelta, timedelta]] = {
    Priority.URGENT: (timedelta(hours=1), timedelta(hours=4)),
    Priority.HIGH: (timedelta(hours=4), timedelta(hours=24)),
    Priority.NORMAL: (timedelta(hours=8), timedelta(hours=72)),
    Priority.LOW: (timedelta(hours=24), timedelta(days=7)),
}

_FLOW: dict[ServiceStatus, frozenset[ServiceStatus]] = {
    ServiceStatus.OPEN: frozenset({ServiceStatus.IN_PROGRESS, ServiceStatus.CLOSED}),
    ServiceStatus.IN_PROGRESS: frozenset({ServiceStatus.RESOLVED}),
    ServiceStatus.RESOLVED: frozenset({ServiceStatus.CLOSED, ServiceStatus.IN_PROGRESS}),
    ServiceStatus.CLOSED: frozenset(),
}


def due_times(priority: str, opened_at: datetime) -> tuple[datetime, datetime]:
    """First-response and resolution due times for a record of ``priority`` opened at ``opened_at``."""
    first_response, resolution = SLA[Priority(priority)]
    return opened_at + first_response, opened_at + resolution


def apply_status_change(record: ServiceRecord, target: str, now: datetime) -> None:
    """Move ``record`` to ``target``, stamping response/resolution/close times; raise if not allowed.

    Resolving and closing need a resolution text; a closed record is final.
    """
    current = ServiceStatus(record.status)
    wanted = ServiceStatus(target)
    if current is wanted:
        return
    if wanted not in _FLOW[current]:
        allowed = ", ".join(sorted(s.value for s in _FLOW[current])) or "none (closed is final)"
        raise InvalidTransition(
            f"status cannot change from {current.value!r} to {wanted.value!r}; allowed: {allowed}", field="status"
        )
    if wanted in {ServiceStatus.RESOLVED, ServiceStatus.CLOSED} and not (record.resolution or "").strip():
        raise InvalidInput(f"resolution is required to set status {wanted.value!r}", field="resolution")
    if record.first_responded_at is None:
        record.first_responded_at = now
    if wanted is ServiceStatus.RESOLVED:
        record.resolved_at = now
    elif wanted is ServiceStatus.CLOSED:
        record.closed_at = now
    elif wanted is ServiceStatus.IN_PROGRESS:
        record.resolved_at = None
    record.status = wanted.value


def check_satisfaction(record: ServiceRecord) -> None:
    """A satisfaction score is given only once the record is resolved or closed."""
    if record.satisfaction is not None and record.status not in {ServiceStatus.RESOLVED, ServiceStatus.CLOSED}:
        raise InvalidInput("satisfaction can be recorded only for resolved or closed records", field="satisfaction")
