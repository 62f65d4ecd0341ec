"""Contact model."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from server.domain.base import Base, RecordMixin
from server.domain.types import UtcDateTime


class Contact(RecordMixin, Base):
    """A person at a customer."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_customer_id_created_at", "customer_id", "created_at"),
        Index("ix_contacts_name_id", "name", "id"),
        Index("ix_contacts_created_at_id", "created_at", "id"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    title: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(Text)
    mobile: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    national_id: Mapped[str | None] = mapped_column(Text)
    marketing_consent: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    consent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    consent_source: Mapped[str | None] = mapped_column(String(100))
    # Blind indexes of the encrypted, blind-indexed fields: a keyed, truncated HMAC of the normalised value
    # (server.security.field_cipher). Equality search and duplicate checks use them; candidates are then
    # decrypted and compared in clear. NULL when the value is NULL or its subject was erased.
    email_bidx: Mapped[int | None] = mapped_column(Integer, index=True)
    phone_bidx: Mapped[int | None] = mapped_column(Integer, index=True)
    mobile_bidx: Mapped[int | None] = mapped_column(Integer, index=True)
    national_id_bidx: Mapped[int | None] = mapped_column(Integer, index=True)
