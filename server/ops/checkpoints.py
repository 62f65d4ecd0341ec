"""The embedded schedule that signs audit checkpoints while the server runs."""

from __future__ import annotations

import asyncio

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.store import make_checkpoint
from server.config import Settings
from server.db import write_transaction

log = structlog.get_logger("strongroom.audit")


async def checkpoint_periodically(session_factory: async_sessionmaker[AsyncSession], key: Ed25519PrivateKey,
                                  settings: Settings) -> None:
    """Every ``audit_checkpoint_seconds``, sign a checkpoint if events were added; errors are logged, not fatal."""
    if settings.audit_checkpoint_seconds == 0:
        return
    while True:
        await asyncio.sleep(settings.audit_checkpoint_seconds)
        try:
            async with session_factory() as session, write_transaction(session):
                signed = await make_checkpoint(session, key, settings.resolved_checkpoint_sink)
            if signed is not None:
                log.info("audit_checkpoint", tree_size=signed.checkpoint.tree_size)
        except Exception as error:  # noqa: BLE001 - the schedule must survive a bad run; the next one retries
            log.warning("audit_checkpoint_failed", error_type=type(error).__name__)
