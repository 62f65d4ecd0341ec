"""Identity models: users, org units, API clients, refresh tokens and revoked access tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from server.domain.base import Base, RecordMixin, utc_now
from server.domain.types import JsonDocument, UtcDateTime
from server.ids import new_id


class OrgUnit(RecordMixin, Base):
    """A department in the organisation tree; ``unit`` record scopes cover a unit and its descendants."""

    __tablename__ = "org_units"

    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("org_units.id"))


class User(RecordMixin, Base):
    """A person who signs in. Roles decide what they may see and do."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    display_name: Mapped[str] = mapped_column(String(200), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(200), nullable=False)
    roles: Mapped[list[str]] = mapped_column(JsonDocument, nullable=False, default=list)
    org_unit_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("org_units.id"))
    manager_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id"))
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Tokens issued before this instant are rejected: disabling or a password reset revokes them all at once.
    tokens_valid_after: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ApiClient(RecordMixin, Base):
    """A machine client (ERP, call centre, web form) using client_credentials under a role and allowed scopes."""

    __tablename__ = "api_clients"

    client_id: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(200), nullable=False)
    roles: Mapped[list[str]] = mapped_column(JsonDocument, nullable=False, default=list)
    allowed_scopes: Mapped[list[str]] = mapped_column(JsonDocument, nullable=False, default=list)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    tokens_valid_after: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RefreshToken(Base):
    """A refresh token for a person, stored only as its SHA-256; rotated on every use."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                                               index=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RevokedToken(Base):
    """An access token revoked before its expiry (by its ``jti``)."""

    __tablename__ = "revoked_tokens"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    revoked_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utc_now)


class SecurityState(Base):
    """One row whose version rises with every change to users, roles, policies, clients or revocations.

    Each server process compares it (at most a few times a second) with the version its caches were built
    from, so a change made through any process is enforced by every process within a second.
    """

    __tablename__ = "security_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)


class PolicyRule(Base):
    """Casbin rules, in the table layout of the Casbin SQLAlchemy adapters (``casbin_rule``)."""

    __tablename__ = "casbin_rule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ptype: Mapped[str] = mapped_column(String(255), nullable=False)
    v0: Mapped[str | None] = mapped_column(String(255))
    v1: Mapped[str | None] = mapped_column(String(255))
    v2: Mapped[str | None] = mapped_column(String(255))
    v3: Mapped[str | None] = mapped_column(String(255))
    v4: Mapped[str | None] = mapped_column(String(255))
    v5: Mapped[str | None] = mapped_column(String(255))


class RoleDefinition(Base):
    """A role name with its description; rules in ``casbin_rule`` refer to it."""

    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(String(500), nullable=False)
    builtin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
