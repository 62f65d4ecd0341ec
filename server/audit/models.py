"""Audit storage: append-only tables of sealed events, their touched fields, and signed checkpoints.

The database refuses UPDATE and DELETE on these tables (triggers, and on PostgreSQL the runtime role's
grants). ``canonical`` holds the exact bytes that were hashed: verification reads and hashes, never re-encodes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from server.domain.base import Base
from server.domain.types import UtcDateTime

AUDIT_TABLES = ("audit_events", "audit_event_fields", "audit_checkpoints")


class AuditEventRecord(Base):
    """One sealed event. The query columns repeat what the canonical bytes say, for indexes."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor_id_seq", "actor_id", "seq"),
        Index("ix_audit_events_action_seq", "action", "seq"),
        Index("ix_audit_events_entity_entity_id_seq", "entity", "entity_id", "seq"),
        Index("ix_audit_events_subject_id_seq", "subject_id", "seq"),
        Index("ix_audit_events_outcome_seq", "outcome", "seq"),
        Index("ix_audit_events_ts", "ts"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    actor_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    entity: Mapped[str | None] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    canonical: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class AuditEventField(Base):
    """Which fields an event touched or revealed, for the per-field compliance query."""

    __tablename__ = "audit_event_fields"
    __table_args__ = (Index("ix_audit_event_fields_field_seq", "field", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, ForeignKey("audit_events.seq"), primary_key=True)
    field: Mapped[str] = mapped_column(String(128), primary_key=True)


class AuditCheckpoint(Base):
    """A signed statement of the Merkle root over the first ``tree_size`` events."""

    __tablename__ = "audit_checkpoints"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    signature: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    key_id: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
