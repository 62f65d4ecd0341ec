"""The server's checkpoint schedule: it hashes outside the write lock, one process at a time, and signs what verifies.

A checkpoint that has to catch up over a long trail (after a bulk import, a restore, an upgrade) hashes for
minutes. It must not hold the write lock meanwhile (on SQLite every audited request needs it), and on PostgreSQL
only one of the server's processes does the work.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from server.audit import store, trail
from server.audit.merkle import CompactRange
from server.audit.models import AuditCheckpoint, AuditCompactRange
from server.audit.sealer import seal_pending
from server.audit.tags import ActorType, AuditAction
from server.db import write_transaction
from server.ops import checkpoints

ACTOR = trail.AuditActor(ActorType.SYSTEM, "test", "checkpoint schedule test")


async def _events(fx_api: Any, count: int) -> int:
    """Record and seal ``count`` events; the chain head."""
    async with fx_api.session_factory() as session, write_transaction(session):
        for number in range(count):
            await trail.record(session, action=AuditAction.UPDATE, actor=ACTOR, entity="customer",
                               entity_id=f"schedule-{number}")
    async with fx_api.session_factory() as session:
        while await seal_pending(session):
            pass
        async with session.begin():
            head = await store.checkpoint_due(session)
    assert head is not None
    return head


def _resources(fx_api: Any) -> Any:
    return fx_api.app.state.resources


async def _checkpoint_once(fx_api: Any) -> int | None:
    """One round of the server's schedule, as one of its processes runs it."""
    resources = _resources(fx_api)
    return await checkpoints.checkpoint_once(fx_api.session_factory, resources.audit_key, resources.settings)


def _hold_hashing(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event, list[int]]:
    """Make the schedule's hashing wait: (set when it starts, set to let it go on, the sizes it was asked for)."""
    started, release, calls = asyncio.Event(), asyncio.Event(), []
    real = checkpoints.merkle_state

    async def held(session: Any, size: int, *args: Any, **kwargs: Any) -> CompactRange:
        calls.append(size)
        started.set()
        await release.wait()
        return await real(session, size, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "merkle_state", held)
    return started, release, calls


async def test_a_scheduled_checkpoint_signs_the_head_and_the_trail_verifies(fx_api: Any) -> None:
    head = await _events(fx_api, 30)
    resources = _resources(fx_api)
    assert await _checkpoint_once(fx_api) == head
    async with fx_api.session_factory() as session:
        signed = await session.get(AuditCheckpoint, head)
        stored = await session.get(AuditCompactRange, head)
        report = await store.verify_trail(session, resources.audit_key.public_key())
    assert signed is not None and stored is not None
    assert report.ok, report.detail
    assert report.checkpoint_size == head
    # Nothing new: no second checkpoint of the same size.
    assert await _checkpoint_once(fx_api) in (None, await _head_after_own_events(fx_api))


async def _head_after_own_events(fx_api: Any) -> int | None:
    async with fx_api.session_factory() as session, session.begin():
        return await store.checkpoint_due(session)


async def test_hashing_does_not_hold_the_write_lock(fx_api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the schedule hashes, another transaction writes and commits (on SQLite: takes the one write lock)."""
    await _events(fx_api, 5)
    hashing, release, _calls = _hold_hashing(monkeypatch)
    scheduled = asyncio.create_task(_checkpoint_once(fx_api))
    await asyncio.wait_for(hashing.wait(), 10)
    async with asyncio.timeout(5):  # with the lock held this would wait for busy_timeout (10 s), then fail
        async with fx_api.session_factory() as session, write_transaction(session):
            await trail.record(session, action=AuditAction.UPDATE, actor=ACTOR, entity="customer",
                               entity_id="written-while-hashing")
    release.set()
    assert await asyncio.wait_for(scheduled, 10) is not None


async def test_one_process_at_a_time_computes_a_checkpoint(fx_api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if fx_api.backend != "postgresql":
        pytest.skip("SQLite has no advisory lock: each process may compute the same checkpoint (one is stored)")
    await _events(fx_api, 5)
    computing, release, calls = _hold_hashing(monkeypatch)
    first = asyncio.create_task(_checkpoint_once(fx_api))
    await asyncio.wait_for(computing.wait(), 10)
    # A second process (its own connection) finds the lock taken and skips the round.
    assert await _checkpoint_once(fx_api) is None
    release.set()
    size = await asyncio.wait_for(first, 10)
    assert size is not None and len(calls) == 1
    async with fx_api.session_factory() as session:
        assert (await session.execute(select(AuditCheckpoint.tree_size).where(AuditCheckpoint.tree_size == size))
                ).scalars().all() == [size]
