"""Storage of data keys (DEKs) and of key-job progress: the ``data_keys`` and ``key_jobs`` tables.

One row of ``data_keys`` per DEK. A data subject (a customer, and everything held under it) has at most one
``active`` DEK, used for new values; DEK rotation (``strongroom keys reencrypt``) makes the old one ``retired``:
still wrapped and readable, because audit events and backups keep ciphertext under it. Erasure makes every DEK
of the subject ``destroyed`` and removes its wrapped key (crypto-shredding); the row stays as a tombstone.

``token_prefix`` is the first 27 characters every sealed value under that DEK starts with (the ``sr:`` marker
and the base64 of the format version, the suite and the DEK id: 18 bytes, so exactly 24 characters that do not
depend on what follows). It lets SQL tell which DEK a stored value uses without decrypting it: the key jobs
and ``strongroom keys status`` count and select values with ``substr(column, 1, 27) = token_prefix``.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from server.domain.base import Base, utc_now
from server.domain.types import UtcDateTime
from server.security.crypto import SEAL_FORMAT_VERSION, SEALED_HEADER_CHARS, SEALED_PREFIX, Suite

__all__ = ["TOKEN_PREFIX_CHARS", "DataKeyRow", "DekState", "KeyJob", "token_prefix"]

TOKEN_PREFIX_CHARS = SEALED_HEADER_CHARS


class DekState(StrEnum):
    """Life of a DEK: ``active`` seals new values, ``retired`` only opens old ones, ``destroyed`` is erased."""

    ACTIVE = "active"
    RETIRED = "retired"
    DESTROYED = "destroyed"


def token_prefix(dek_id: uuid.UUID, suite: Suite) -> str:
    """The first ``TOKEN_PREFIX_CHARS`` characters of every sealed token made with this DEK."""
    header = bytes((SEAL_FORMAT_VERSION, int(suite))) + dek_id.bytes
    return SEALED_PREFIX + base64.urlsafe_b64encode(header).decode("ascii")


class DataKeyRow(Base):
    """A DEK wrapped under a KEK version (``WrappedDek.to_bytes()``), owned by one data subject."""

    __tablename__ = "data_keys"
    __table_args__ = (
        # One active DEK per subject: two writers creating a subject's first DEK at once cannot both win.
        Index("uq_data_keys_active_subject", "subject_id", unique=True,
              sqlite_where=text("state = 'active'"), postgresql_where=text("state = 'active'")),
        Index("ix_data_keys_subject_id_generation", "subject_id", "generation"),
        Index("ix_data_keys_kek_version_id", "kek_version", "id"),
        Index("ix_data_keys_state_created_at", "state", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    subject_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    generation: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    suite: Mapped[int] = mapped_column(Integer, nullable=False)
    kek_version: Mapped[int | None] = mapped_column(Integer)
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_prefix: Mapped[str] = mapped_column(String(TOKEN_PREFIX_CHARS), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utc_now)
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    destroyed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    replaced_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("data_keys.id"))


class KeyJob(Base):
    """A long-running key job (DEK re-encryption): its cutoff and counters, so an interrupted run resumes."""

    __tablename__ = "key_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    cutoff: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    subjects_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    values_resealed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    values_unreadable: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
