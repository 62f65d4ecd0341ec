"""Opportunity and stage-history models."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from server.domain.base import Base, RecordMixin, utc_now
from server.domain.types import Money, UtcDateTime
from server.ids import new_id


class PipelineStage(StrEnum):
    QUALIFICATION = "qualification"
    NEEDS_ANALYSIS = "needs_analysis"
    PROPOSAL = "proposal"
    NEGOTIATION = "negotiation"
    WON = "won"
    LOST = "lost"


class Opportunity(RecordMixin, Base):
    """A potential sale to a customer."""

    __tablename__ = "opportunities"
    __table_args__ = (
        Index("ix_opportunities_customer_id_stage", "customer_id", "stage"),
        Index("ix_opportunities_owner_id_created_at", "owner_id", "created_at"),
        Index("ix_opportunities_created_at_id", "created_at", "id"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"), nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    stage: Mapped[str] = mapped_column(String(16), nullable=False)
    probability: Mapped[int] = mapped_column(Integer, nullable=False)
    expected_close_date: Mapped[date | None] = mapped_column(Date)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id"), nullable=False)
    loss_reason: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class StageChange(Base):
    """One change of an opportunity's stage: who moved it, from where to where, and when."""

    __tablename__ = "opportunity_stage_history"
    __table_args__ = (Index("ix_opportunity_stage_history_opportunity_id_changed_at", "opportunity_id", "changed_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    opportunity_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("opportunities.id", ondelete="CASCADE"), nullable=False
    )
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16), nullable=False)
    changed_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utc_now)
    reason: Mapped[str | None] = mapped_column(Text)
