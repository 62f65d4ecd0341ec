"""Audit storage: append-only tables of sealed events, their touched fields, and signed checkpoints.

The database refuses UPDATE and DELETE on these tables (triggers, and on PostgreSQL the runtime role's
grants). ``canonical`` holds the exact bytes that were hashed: verification reads and hashes, never re-encodes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.domain.base import Base
from server.domain.types import UtcDateTime

AUDIT_TABLES = ("audit_events", "audit_event_fields", "audit_event_subjects", "audit_checkpoints")
PENDING_TABLE = "audit_pending"


class AuditEventRecord(Base):
    """One sealed event. The query columns repeat what the canonical bytes say, for indexes."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor_id_seq", "actor_id", "seq"),
        Index("ix_audit_events_action_seq", "action", "seq"),
        Index("ix_audit_events_entity_entity_id_seq", "entity", "entity_id", "seq"),
        Index("ix_audit_events_entity_seq", "entity", "seq"),
        Index("ix_audit_events_entity_id_seq", "entity_id", "seq"),
        Index("ix_audit_events_subject_id_seq", "subject_id", "seq"),
        Index("ix_audit_events_outcome_seq", "outcome", "seq"),
        Index("ix_audit_events_ts_seq", "ts", "seq"),
        Index("uq_audit_events_pending_id", "pending_id", unique=True),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # The pending row this event was sealed from (None for events sealed directly): the database lets a
    # pending row be deleted only once its sealed event exists.
    pending_id: Mapped[int | None] = mapped_column(BigInteger)
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

    # No foreign key to audit_events: it cost a lookup and a lock per row (migration c7d9e2f4a6b8); only the
    # appending code writes these rows, in the transaction of their event.
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    field: Mapped[str] = mapped_column(String(128), primary_key=True)


class AuditEventSubject(Base):
    """The data subjects (customers) of an event that concerns several (a list, an export, a 360 view).

    With ``audit_events.subject_id`` (one subject) it answers "everything seen of customer X" in one query.
    """

    __tablename__ = "audit_event_subjects"
    __table_args__ = (Index("ix_audit_event_subjects_subject_id_seq", "subject_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # no foreign key: see AuditEventField
    subject_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class AuditCheckpoint(Base):
    """A signed statement of the Merkle root over the first ``tree_size`` events."""

    __tablename__ = "audit_checkpoints"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    signature: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    key_id: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class AuditPending(Base):
    """An event written in the transaction of the act it describes, waiting for the sealer.

    ``canonical`` is the event's canonical encoding with a placeholder sequence number; the sealer
    (:mod:`server.audit.sealer`) gives it the next position in commit order, seals it into ``audit_events``
    and deletes this row, in one transaction. The query columns travel with it so the sealer never parses
    JSON. The database refuses UPDATE here, and DELETE of a row whose sealed event does not exist yet.
    """

    __tablename__ = PENDING_TABLE
    # Ids must never be reused (the sealed event names its pending id): SQLite reuses a deleted row's
    # rowid unless the table is AUTOINCREMENT. PostgreSQL's sequence never goes back.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    actor_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    entity: Mapped[str | None] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    fields: Mapped[str] = mapped_column(Text, nullable=False)  # touched field names, space-separated
    subjects: Mapped[str] = mapped_column(Text, nullable=False)  # further subject ids, space-separated
    canonical: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


# -- Retention: archives, legal holds and stored Merkle state (server/audit/retention.py) ------------------------

RETENTION_TABLES = ("audit_archives", "audit_legal_holds", "audit_legal_hold_releases", "audit_compact_ranges")


class AuditArchive(Base):
    """One archive: events ``first_seq..last_seq`` written to a verifiable file, then deleted from the database.

    Append-only and, on PostgreSQL, writable only by the schema owner: the database lets rows of
    ``audit_events`` (and their field and subject rows) be deleted only up to the newest archive's ``last_seq``.
    ``last_hash`` and ``compact_range`` are what the retained trail needs of the archived prefix: the hash its
    first event links to, and the Merkle subtree roots (largest first) from which the root of every later tree
    and every proof about a retained event is still computed.
    """

    __tablename__ = "audit_archives"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # Unique, so two archive runs racing cannot both continue the same boundary.
    first_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, unique=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, unique=True)
    last_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    compact_range: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    events: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cutoff: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)  # events before it had expired
    file_name: Mapped[str] = mapped_column(String(255), nullable=False)
    file_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    file_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)


class AuditLegalHold(Base):
    """A legal hold: events about ``subject_id`` and/or recorded in ``[since, until)`` may not be archived.

    A hold with neither holds every event. Released by a row in ``audit_legal_hold_releases``, never changed.
    """

    __tablename__ = "audit_legal_holds"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    subject_id: Mapped[str | None] = mapped_column(String(64))
    since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)


class AuditLegalHoldRelease(Base):
    """The release of a legal hold (at most one per hold)."""

    __tablename__ = "audit_legal_hold_releases"

    hold_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                         ForeignKey("audit_legal_holds.id"), primary_key=True, autoincrement=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    released_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    released_by: Mapped[str] = mapped_column(String(128), nullable=False)


class AuditCompactRange(Base):
    """The Merkle compact range of the first ``tree_size`` events, stored with each checkpoint and archive.

    The next checkpoint starts from the newest one and hashes only the events added since.
    """

    __tablename__ = "audit_compact_ranges"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    nodes: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
