"""Customer model."""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from server.domain.base import Base, RecordMixin
from server.domain.types import JsonDocument


class CustomerKind(StrEnum):
    COMPANY = "company"
    INDIVIDUAL = "individual"


class Tier(StrEnum):
    A = "A"
    B = "B"
    C = "C"


class LifecycleStage(StrEnum):
    LEAD = "lead"
    PROSPECT = "prospect"
    CUSTOMER = "customer"
    CHURNED = "churned"


class SourceChannel(StrEnum):
    WEB = "web"
    REFERRAL = "referral"
    EVENT = "event"
    PARTNER = "partner"
    OUTBOUND = "outbound"
    ADVERTISING = "advertising"
    OTHER = "other"


class Customer(RecordMixin, Base):
    """A company or an individual that the enterprise sells to or serves."""

    __tablename__ = "customers"
    __table_args__ = (
        Index("ix_customers_owner_id_created_at", "owner_id", "created_at"),
        Index("ix_customers_name_id", "name", "id"),
        Index("ix_customers_created_at_id", "created_at", "id"),
    )

    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    industry: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    tier: Mapped[str | None] = mapped_column(String(1))
    lifecycle_stage: Mapped[str] = mapped_column(String(16), nullable=False, default=LifecycleStage.LEAD.value)
    source_channel: Mapped[str | None] = mapped_column(String(16))
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"), nullable=False)
    org_unit_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("org_units.id"))
    tax_id: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JsonDocument, nullable=False, default=list)
    notes: Mapped[str | None] = mapped_column(Text)
