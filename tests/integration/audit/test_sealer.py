"""The sealer from the attacker's side and under concurrency, on SQLite and PostgreSQL.

Events are written pending in the business transaction and chained by the sealer in commit order.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from server.audit import trail
from server.audit.canonical import decode_event
from server.audit.models import AuditEventRecord, AuditEventSubject, AuditPending
from server.audit.sealer import seal_pending, with_seq
from server.audit.store import load_or_create_audit_key, verify_trail
from server.audit.tags import ActorType, AuditAction
from server.db import write_transaction

ACTOR = trail.AuditActor(ActorType.SYSTEM, "test", "sealer test")


async def _record(fx_api: Any, **details: Any) -> None:
    async with fx_api.session_factory() as session, write_transaction(session):
        await trail.record(session, action=AuditAction.UPDATE, actor=ACTOR, entity="customer", **details)


async def _pending_count(fx_api: Any) -> int:
    async with fx_api.session_factory() as session:
        return int((await session.execute(select(func.count()).select_from(AuditPending))).scalar_one())


async def _seal_until(fx_api: Any, stop: asyncio.Event) -> None:
    """A sealer as a server process runs one, passing back to back until ``stop``."""
    while not stop.is_set():
        async with fx_api.session_factory() as session:
            await seal_pending(session)
        await asyncio.sleep(0)


async def _verify(fx_api: Any) -> Any:
    key = load_or_create_audit_key(fx_api.app.state.resources.settings.resolved_keys_dir, create=False)
    async with fx_api.session_factory() as session, session.begin():
        return await verify_trail(session, key.public_key())


def test_the_sequence_number_lands_in_the_events_own_key() -> None:
    # "before" may hold keys named seq and ts (a record with such fields): only the top-level one changes.
    from server.audit.canonical import encode_event

    event = {"seq": trail.PLACEHOLDER_SEQ, "ts": "2026-11-23T10:00:00.000000Z", "actor_type": "system",
             "actor_id": None, "actor_name": None, "actor_roles": [], "action": "update", "entity": "x",
             "entity_id": None, "fields": ["seq"], "before": {"seq": 1, "ts": "x"}, "after": {"seq": 1, "ts": "y"},
             "outcome": "ok", "request_id": ',"seq":1,"ts":"', "client_address": None, "user_agent": None,
             "reason": None}
    sealed = decode_event(with_seq(encode_event(event), 4711))
    assert sealed["seq"] == 4711
    assert (sealed["before"], sealed["after"], sealed["request_id"]) == (event["before"], event["after"],
                                                                         event["request_id"])


async def test_an_event_is_pending_until_sealed_then_chained_with_its_subjects(fx_api: Any) -> None:
    subject, others = str(uuid.uuid4()), [str(uuid.uuid4()), str(uuid.uuid4())]
    await _record(fx_api, entity_id=subject, subject_id=subject, subjects=[subject, *others], fields=["tier"])
    assert await _pending_count(fx_api) >= 1
    await fx_api.seal()
    assert await _pending_count(fx_api) == 0
    async with fx_api.session_factory() as session:
        event = (await session.execute(select(AuditEventRecord).where(AuditEventRecord.entity_id == subject))
                 ).scalar_one()
        named = (await session.execute(select(AuditEventSubject.subject_id)
                                       .where(AuditEventSubject.seq == event.seq))).scalars().all()
    assert decode_event(bytes(event.canonical))["seq"] == event.seq
    assert event.pending_id is not None
    assert sorted(named) == sorted(others)  # the main subject is in subject_id, not repeated
    assert (await _verify(fx_api)).ok


async def test_the_database_refuses_to_alter_or_drop_a_pending_event(fx_api: Any) -> None:
    # In the transaction that wrote it, so no sealer can have taken the event yet.
    for statement in ("UPDATE audit_pending SET action = 'read'", "DELETE FROM audit_pending"):
        async with fx_api.session_factory() as session:
            with pytest.raises(DBAPIError, match=r"append-only|only by the sealer"):
                async with write_transaction(session):
                    await trail.record(session, action=AuditAction.UPDATE, actor=ACTOR, entity="customer")
                    await session.execute(text(statement))


async def test_sixteen_writers_and_two_sealers_make_one_chain(fx_api: Any) -> None:
    """Writers commit in any order while two sealers (two server processes) race: no fork, no gap, no loss."""
    await fx_api.seal()
    async with fx_api.session_factory() as session:
        before = int((await session.execute(select(func.coalesce(func.max(AuditEventRecord.seq), 0)))).scalar_one())
    marker = uuid.uuid4().hex
    writes_per_writer = 25
    stop = asyncio.Event()

    async def writer(index: int) -> None:
        for round_ in range(writes_per_writer):
            await _record(fx_api, entity_id=f"{marker}-{index}-{round_}")

    sealers = [asyncio.create_task(_seal_until(fx_api, stop)) for _ in range(2)]
    await asyncio.gather(*(writer(index) for index in range(16)))
    stop.set()
    await asyncio.gather(*sealers)
    await fx_api.seal()
    async with fx_api.session_factory() as session:
        count, lowest, highest = (await session.execute(
            select(func.count(), func.min(AuditEventRecord.seq), func.max(AuditEventRecord.seq))
            .where(AuditEventRecord.seq > before))).one()
        ours = (await session.execute(select(AuditEventRecord.entity_id)
                                      .where(AuditEventRecord.entity_id.like(f"{marker}-%")))).scalars().all()
    assert len(ours) == len(set(ours)) == 16 * writes_per_writer  # each once: none lost, none doubled
    assert (lowest, highest - lowest + 1) == (before + 1, count)  # consecutive: no gap, no duplicate
    assert (await _verify(fx_api)).ok


async def test_group_commit_writers_and_sealers_racing_make_one_chain(fx_api: Any) -> None:
    """Read events chained at once by two group-commit writers (on PostgreSQL inside the database, by
    ``strongroom_audit_append``) race with sixteen business writers and two sealers: still one chain."""
    from server.audit.group_commit import GroupCommitWriter

    await fx_api.seal()
    marker = uuid.uuid4().hex
    stop = asyncio.Event()
    readers = [GroupCommitWriter(fx_api.engine) for _ in range(2)]
    for reader in readers:
        reader.start()

    async def business(index: int) -> None:
        for round_ in range(10):
            await _record(fx_api, entity_id=f"{marker}-w-{index}-{round_}")

    async def reads(reader: GroupCommitWriter, index: int) -> None:
        await asyncio.gather(*(reader.write(trail.pending_event(
            action=AuditAction.READ, actor=ACTOR, entity="contact", entity_id=f"{marker}-r-{index}-{round_}",
            fields=["email", "phone"], subjects=[marker])) for round_ in range(40)))

    sealers = [asyncio.create_task(_seal_until(fx_api, stop)) for _ in range(2)]
    await asyncio.gather(*(business(index) for index in range(16)),
                         *(reads(reader, index) for index, reader in enumerate(readers)))
    stop.set()
    await asyncio.gather(*sealers)
    for reader in readers:
        await reader.stop()
    await fx_api.seal()
    async with fx_api.session_factory() as session:
        ours = (await session.execute(select(AuditEventRecord.entity_id)
                                      .where(AuditEventRecord.entity_id.like(f"{marker}-%")))).scalars().all()
        seen = (await session.execute(select(func.count()).select_from(AuditEventSubject)
                                      .where(AuditEventSubject.subject_id == marker))).scalar_one()
    assert len(ours) == len(set(ours)) == 16 * 10 + 2 * 40
    assert seen == 2 * 40  # every read event's subject row, at the read event's own sequence number
    assert (await _verify(fx_api)).ok


def test_the_database_append_takes_the_same_chain_lock_as_the_sealer() -> None:
    """Two lock keys would let the in-database append and a seal pass both take the head: a fork."""
    import importlib.util
    from pathlib import Path

    from server.audit.sealer import CHAIN_LOCK_KEY

    path = next(Path("server/migrations/versions").glob("*_b4e8c1d2f3a5_audit_append_function.py"))
    spec = importlib.util.spec_from_file_location("audit_append_function", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.CHAIN_LOCK_KEY == CHAIN_LOCK_KEY


async def test_a_rolled_back_change_leaves_no_event(fx_api: Any) -> None:
    marker = f"rolled-back-{uuid.uuid4().hex}"

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with fx_api.session_factory() as session, write_transaction(session):
            await trail.record(session, action=AuditAction.CREATE, actor=ACTOR, entity="customer", entity_id=marker)
            raise Abort
    await fx_api.seal()
    async with fx_api.session_factory() as session:
        found = (await session.execute(select(func.count()).select_from(AuditEventRecord)
                                       .where(AuditEventRecord.entity_id == marker))).scalar_one()
    assert found == 0


async def test_concurrent_reads_share_transactions_and_each_is_recorded_before_its_answer(fx_api: Any) -> None:
    rep = await fx_api.login(["sales_rep"])
    customer = (await fx_api.client.post("/api/v1/customers", headers=rep,
                                         json={"name": "Group Commit Ltd", "kind": "company"})).json()
    contact = (await fx_api.client.post("/api/v1/contacts", headers=rep, json={
        "customer_id": customer["id"], "name": "Sun Li", "email": "sun.li@example.com"})).json()
    answers = await asyncio.gather(*(fx_api.client.get(f"/api/v1/contacts/{contact['id']}", headers=rep)
                                     for _ in range(20)))
    assert [answer.status_code for answer in answers] == [200] * 20
    # Every answered read's event is committed already (pending or sealed), before any seal pass runs here.
    async with fx_api.session_factory() as session:
        recorded = (await session.execute(text(
            "SELECT (SELECT count(*) FROM audit_pending WHERE entity_id = :id AND action = 'read') + "
            "(SELECT count(*) FROM audit_events WHERE entity_id = :id AND action = 'read')"),
            {"id": contact["id"]})).scalar_one()
    assert recorded == 20


async def test_a_failed_group_commit_fails_every_waiting_read(fx_api: Any) -> None:
    from server.audit.group_commit import AuditWriteFailed, GroupCommitWriter

    writer = GroupCommitWriter(fx_api.engine)
    writer.start()
    good = trail.pending_event(action=AuditAction.READ, actor=ACTOR, entity="contact", entity_id="batch-good")
    bad = {**good, "action": None}  # NOT NULL: the whole transaction fails
    outcomes = await asyncio.gather(writer.write(good), writer.write(bad), return_exceptions=True)
    await writer.stop()
    assert all(isinstance(outcome, AuditWriteFailed) and outcome.__cause__ is not None for outcome in outcomes)
    async with fx_api.session_factory() as session:
        kept = (await session.execute(text(
            "SELECT (SELECT count(*) FROM audit_pending WHERE entity_id = 'batch-good') + "
            "(SELECT count(*) FROM audit_events WHERE entity_id = 'batch-good')"))).scalar_one()
    assert kept == 0  # nothing half-written
    assert (await _verify(fx_api)).ok


async def test_a_writer_whose_connection_failed_to_set_up_connects_afresh(
        fx_api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while the held connection is being set up fails that batch only: no half-set connection is kept
    for the next one."""
    from sqlalchemy.ext.asyncio import AsyncConnection

    from server.audit.group_commit import AuditWriteFailed, GroupCommitWriter

    real = AsyncConnection.get_raw_connection
    failed: list[bool] = []

    async def fail_once(self: AsyncConnection) -> Any:
        if not failed:
            failed.append(True)
            raise ConnectionResetError("the database went away during set-up")
        return await real(self)

    monkeypatch.setattr(AsyncConnection, "get_raw_connection", fail_once)
    writer = GroupCommitWriter(fx_api.engine)
    writer.start()
    marker = uuid.uuid4().hex
    with pytest.raises(AuditWriteFailed):
        await writer.write(trail.pending_event(action=AuditAction.READ, actor=ACTOR, entity="contact",
                                               entity_id=f"{marker}-lost"))
    await writer.write(trail.pending_event(action=AuditAction.READ, actor=ACTOR, entity="contact",
                                           entity_id=f"{marker}-kept"))
    await writer.stop()
    async with fx_api.session_factory() as session:
        written = (await session.execute(select(AuditEventRecord.entity_id).where(
            AuditEventRecord.entity_id.like(f"{marker}-%")))).scalars().all()
    assert failed and written == [f"{marker}-kept"]
    assert (await _verify(fx_api)).ok


async def test_the_group_commit_writer_replaces_a_connection_the_database_dropped(fx_api: Any) -> None:
    """The writer holds one connection; after a database restart kills it, the next read event is still written,
    once, on a new connection (the batch never reached COMMIT on the dead one, so the retry cannot double it)."""
    from server.audit.group_commit import APPLICATION_NAME, GroupCommitWriter

    if fx_api.backend != "postgresql":
        pytest.skip("an embedded SQLite database has no server connection that can be dropped")
    writer = GroupCommitWriter(fx_api.engine)
    writer.start()
    marker = uuid.uuid4().hex
    await writer.write(trail.pending_event(action=AuditAction.READ, actor=ACTOR, entity="contact",
                                           entity_id=f"{marker}-before"))
    async with fx_api.session_factory() as session, session.begin():
        killed = (await session.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = :name"), {"name": APPLICATION_NAME})).scalar_one()
    assert killed >= 1
    await writer.write(trail.pending_event(action=AuditAction.READ, actor=ACTOR, entity="contact",
                                           entity_id=f"{marker}-after"))
    await writer.stop()
    async with fx_api.session_factory() as session:
        written = (await session.execute(select(AuditEventRecord.entity_id).where(
            AuditEventRecord.entity_id.like(f"{marker}-%")).order_by(AuditEventRecord.seq))).scalars().all()
    assert written == [f"{marker}-before", f"{marker}-after"]
    assert (await _verify(fx_api)).ok


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "not-committed"])
async def test_a_batch_lost_with_its_connection_after_it_was_sent_is_in_the_chain_once(
        fx_api: Any, monkeypatch: pytest.MonkeyPatch, committed: bool) -> None:
    """The connection dies after the batch was sent: whether it committed is unknown to the writer, which looks
    under the chain lock on a new connection and appends it only if it is not there (never twice, never lost)."""
    from server.audit import group_commit

    if fx_api.backend != "postgresql":
        pytest.skip("on SQLite a batch is never sent over a connection that can die")
    real = group_commit.chain_now_on_driver
    lost_once: list[bool] = []

    async def then_lose_the_connection(driver: Any, rows: Any) -> int:
        if lost_once:
            return await real(driver, rows)
        lost_once.append(True)
        if committed:
            await real(driver, rows)
        driver.terminate()
        raise ConnectionResetError("connection lost after the statement was sent")

    monkeypatch.setattr(group_commit, "chain_now_on_driver", then_lose_the_connection)
    writer = group_commit.GroupCommitWriter(fx_api.engine)
    writer.start()
    marker = uuid.uuid4().hex
    await asyncio.gather(*(writer.write(trail.pending_event(
        action=AuditAction.READ, actor=ACTOR, entity="contact", entity_id=f"{marker}-{n}", fields=["email"]))
        for n in range(3)))
    await writer.stop()
    async with fx_api.session_factory() as session:
        written = (await session.execute(select(AuditEventRecord.entity_id).where(
            AuditEventRecord.entity_id.like(f"{marker}-%")).order_by(AuditEventRecord.seq))).scalars().all()
    assert lost_once and written == [f"{marker}-{n}" for n in range(3)]
    assert (await _verify(fx_api)).ok


async def test_group_committed_reads_are_chained_in_their_own_transaction(fx_api: Any) -> None:
    """Read events go straight into the chain (no pending row, no seal pass), after events sealed before."""
    from server.audit.group_commit import GroupCommitWriter

    await fx_api.seal()
    writer = GroupCommitWriter(fx_api.engine)
    writer.start()
    marker = uuid.uuid4().hex
    rows = [trail.pending_event(action=AuditAction.READ, actor=ACTOR, entity="contact", entity_id=f"{marker}-{n}",
                                subject_id=marker, subjects=[str(uuid.uuid4())], fields=["email", "phone"])
            for n in range(30)]
    await asyncio.gather(*(writer.write(row) for row in rows))
    await writer.stop()
    assert await _pending_count(fx_api) == 0  # chained when committed; nothing left for a sealer
    async with fx_api.session_factory() as session:
        chained = (await session.execute(select(AuditEventRecord).where(AuditEventRecord.subject_id == marker)
                                         .order_by(AuditEventRecord.seq))).scalars().all()
        named = (await session.execute(select(func.count()).select_from(AuditEventSubject).where(
            AuditEventSubject.seq.in_([event.seq for event in chained])))).scalar_one()
    assert len(chained) == 30 and named == 30
    assert all(decode_event(bytes(event.canonical))["seq"] == event.seq for event in chained)
    assert all(event.pending_id is None for event in chained)
    assert [event.ts for event in chained] == [row["ts"] for row in rows]  # stored and read back as the ORM does
    if fx_api.backend == "sqlite":
        # Stored as text in the same form as an event the sealer chained through the ORM (the SQLite writer binds
        # its own values: server.audit.sqlite_append), so time-window queries compare like with like.
        await _record(fx_api, entity_id=f"{marker}-sealed")
        await fx_api.seal()
        async with fx_api.session_factory() as session:
            forms = (await session.execute(text(
                "SELECT DISTINCT typeof(ts) || ':' || length(ts) FROM audit_events WHERE entity_id LIKE :marker"),
                {"marker": f"{marker}-%"})).scalars().all()
        assert forms == ["text:26"], forms
    assert (await _verify(fx_api)).ok


async def test_the_background_sealer_chains_a_burst_of_commits_in_few_passes(fx_api: Any) -> None:
    """The server's sealer wakes on a commit, waits for the burst to land, then chains it in one pass."""
    from server.audit import sealer

    await fx_api.seal()
    passes: list[int] = []
    real_seal_pending = sealer.seal_pending

    async def counting(session: Any) -> int:
        sealed = await real_seal_pending(session)
        if sealed:
            passes.append(sealed)
        return sealed

    sealer.seal_pending = counting  # type: ignore[assignment]
    # A second to coalesce: on a loaded machine ten commits took longer than 0.3 s (passes of 3, 5 and 2).
    task = asyncio.create_task(sealer.seal_continuously(fx_api.session_factory, poll_seconds=5.0,
                                                        coalesce_seconds=1.0))
    try:
        await asyncio.sleep(0.1)  # the task has registered its wake-up and is waiting
        # One commit wakes the sealer; the other nine land while it coalesces.
        for _ in range(10):
            await _record(fx_api, entity_id=str(uuid.uuid4()), fields=["tier"])
        for _ in range(100):
            if await _pending_count(fx_api) == 0:
                break
            await asyncio.sleep(0.05)
        assert await _pending_count(fx_api) == 0, "the background sealer did not chain the burst"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sealer.seal_pending = real_seal_pending  # type: ignore[assignment]
    # The app under test runs its own sealer too (polling each second), so it may chain part of the burst.
    assert passes, "the background sealer chained nothing"
    assert len(passes) <= 3, passes  # coalesced: not one pass per commit (ten)
    assert (await _verify(fx_api)).ok
