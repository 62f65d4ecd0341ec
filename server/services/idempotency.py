"""Idempotency-Key support: a retried POST returns the first answer instead of creating twice."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Integer, LargeBinary, String, Uuid, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from server.db import write_transaction
from server.domain.base import Base, utc_now
from server.domain.types import UtcDateTime
from server.errors import Conflict, InvalidInput

MAX_KEY_LENGTH = 200


class IdempotencyRecord(Base):
    """The stored answer to the first request made with a key, per principal."""

    __tablename__ = "idempotency_keys"

    principal_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    request_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    response_body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utc_now)


def fingerprint(operation: str, body: Any) -> str:
    """A digest of what was asked, so a key reused for a different request is caught."""
    return hashlib.sha256(operation.encode() + b"\0" + msgspec.json.encode(body, order="sorted")).hexdigest()


def check_key(key: str) -> str:
    """Validate an Idempotency-Key header value."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters",
                           field="Idempotency-Key")
    return key


async def run_once(
    session: AsyncSession,
    *,
    principal_id: uuid.UUID,
    key: str,
    request_fingerprint: str,
    action: Callable[[], Awaitable[dict[str, Any]]],
    ttl: timedelta,
) -> tuple[dict[str, Any], bool]:
    """Run ``action`` in one transaction together with storing its answer under ``key``.

    Returns the answer and whether it was replayed. A concurrent request with the same key loses the race on
    the primary key, rolls back its own work and replays the winner's answer.
    """
    stored = await _stored_answer(session, principal_id, key, request_fingerprint, ttl)
    if stored is not None:
        return stored, True
    try:
        async with write_transaction(session):
            answer = await action()
            session.add(IdempotencyRecord(principal_id=principal_id, key=key,
                                          request_fingerprint=request_fingerprint, status_code=201,
                                          response_body=msgspec.json.encode(answer)))
            await session.flush()
    except IntegrityError:
        stored = await _stored_answer(session, principal_id, key, request_fingerprint, ttl)
        if stored is None:
            raise
        return stored, True
    return answer, False


async def _stored_answer(session: AsyncSession, principal_id: uuid.UUID, key: str, request_fingerprint: str,
                         ttl: timedelta) -> dict[str, Any] | None:
    async with write_transaction(session):
        record = await session.get(IdempotencyRecord, (principal_id, key))
        if record is None:
            return None
        if record.created_at < utc_now() - ttl:
            await session.execute(delete(IdempotencyRecord).where(
                IdempotencyRecord.principal_id == principal_id, IdempotencyRecord.key == key))
            return None
        if record.request_fingerprint != request_fingerprint:
            raise Conflict("this Idempotency-Key was already used for a different request", field="Idempotency-Key")
        answer: dict[str, Any] = msgspec.json.decode(record.response_body)
        return answer
