"""Activity model."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from server.domain.base import Base, RecordMixin
from server.domain.types import UtcDateTime


class ActivityKind(StrEnum):
    VISIT = "visit"
    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"
    NOTE = "note"


class Activity(RecordMixin, Base):
    """Something that happened with a customer, optionally about a contact, opportunity or service record."""

    __tablename__ = "activities"
    __table_args__ = (
        Index("ix_activities_customer_id_occurred_at", "customer_id", "occurred_at"),
        Index("ix_activities_created_at_id", "created_at", "id"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"), nullable=False)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("contacts.id"))
    opportunity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("opportunities.id"))
    service_record_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("service_records.id"))
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"), nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False)
