"""The embedded schedule that signs audit checkpoints while the server runs.

Every worker process runs it. A checkpoint hashes the events sealed since the newest stored Merkle state: a few
thousand on a running server, but the whole trail the first time (after a bulk import, or a restore or an upgrade
without stored states), tens of millions of events. So the hashing is done apart from the signing: in a read-only
transaction, in small batches that give the event loop back between them (requests are served meanwhile), and on
PostgreSQL by one process at a time (the others skip the round). Only the signature and the stored state take a
write transaction, which on SQLite holds the one write lock every audited request needs.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.merkle import CompactRange
from server.audit.store import checkpoint_due, merkle_state, sign_checkpoint
from server.config import Settings
from server.db import write_transaction

log = structlog.get_logger("strongroom.audit")

# Events hashed per fetch when catching up in the background: each batch holds the event loop for a few
# milliseconds (the default batch of 20,000, for the command line, held it for a tenth of a second and more).
BACKGROUND_BATCH: Final = 1_000
CHECKPOINT_LOCK_KEY: Final = 0x5354524F4E48  # "STRONH": one checkpointing process at a time (PostgreSQL)


async def _merkle_state_to_sign(session: AsyncSession) -> CompactRange | None:
    """The Merkle state at the chain head if a checkpoint is due and this process may compute it, else None."""
    async with session.begin():
        if session.get_bind().dialect.name == "postgresql" and not (await session.execute(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": CHECKPOINT_LOCK_KEY})).scalar_one():
            return None  # another process is computing it
        head = await checkpoint_due(session)
        if head is None:
            return None
        return await merkle_state(session, head, batch_size=BACKGROUND_BATCH)


async def checkpoint_once(session_factory: async_sessionmaker[AsyncSession], key: Ed25519PrivateKey,
                          settings: Settings) -> int | None:
    """Sign a checkpoint of the chain head if one is due; the tree size signed, or None."""
    async with session_factory() as session:
        compact = await _merkle_state_to_sign(session)
        if compact is None:
            return None
        async with write_transaction(session):
            signed = await sign_checkpoint(session, key, compact, settings.resolved_checkpoint_sink)
    return None if signed is None else signed.checkpoint.tree_size


async def checkpoint_periodically(session_factory: async_sessionmaker[AsyncSession], key: Ed25519PrivateKey,
                                  settings: Settings) -> None:
    """Every ``audit_checkpoint_seconds``, sign a checkpoint if events were added; errors are logged, not fatal."""
    if settings.audit_checkpoint_seconds == 0:
        return
    while True:
        await asyncio.sleep(settings.audit_checkpoint_seconds)
        try:
            size = await checkpoint_once(session_factory, key, settings)
            if size is not None:
                log.info("audit_checkpoint", tree_size=size)
        except Exception as error:  # noqa: BLE001 - the schedule must survive a bad run; the next one retries
            log.warning("audit_checkpoint_failed", error_type=type(error).__name__)
