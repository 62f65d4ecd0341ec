"""User model."""

from __future__ import annotations

import uuid

from sqlalchemy import Boolean, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from server.domain.base import Base, RecordMixin
from server.domain.types import JsonDocument


class User(RecordMixin, Base):
    """A person who signs in. Roles decide what they may see and do."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    display_name: Mapped[str] = mapped_column(String(200), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(200), nullable=False)
    roles: Mapped[list[str]] = mapped_column(JsonDocument, nullable=False, default=list)
    org_unit_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    manager_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
