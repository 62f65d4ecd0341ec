"""Service record model."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from server.domain.base import Base, RecordMixin
from server.domain.types import UtcDateTime


class ServiceType(StrEnum):
    INQUIRY = "inquiry"
    COMPLAINT = "complaint"
    REPAIR = "repair"
    MAINTENANCE = "maintenance"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class ServiceStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


class ServiceRecord(RecordMixin, Base):
    """A ticket or work order for a customer."""

    __tablename__ = "service_records"
    __table_args__ = (
        Index("ix_service_records_customer_id_created_at", "customer_id", "created_at"),
        Index("ix_service_records_status_resolution_due", "status", "resolution_due"),
        Index("ix_service_records_created_at_id", "created_at", "id"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"), nullable=False)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("contacts.id"))
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    priority: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    resolution: Mapped[str | None] = mapped_column(Text)
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    first_response_due: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    resolution_due: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    first_responded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
