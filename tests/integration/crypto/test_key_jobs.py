"""Key jobs on a live database: KEK rotation beside concurrent writers and readers, resumable DEK rotation."""

from __future__ import annotations

import argparse
import asyncio
import re
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from server.db import write_transaction
from server.domain.contacts import CONTACT, Contact
from server.ops import keys
from server.ops.keys_cli import add_key_commands
from server.security.crypto import SEALED_PREFIX
from server.security.data_keys import DataKeyRow, DekState, KeyJob
from server.security.field_cipher import FieldCipher, Unreadable

from .conftest import Crm, beside_traffic, new_cipher


async def test_kek_rotation_under_concurrent_seal_and_open_loses_nothing(fx_crm: Crm) -> None:
    customers = [await fx_crm.customer() for _ in range(12)]
    expected: dict[uuid.UUID, str] = {}
    for customer in customers:
        for _ in range(2):
            contact = await fx_crm.contact(customer.id)
            expected[contact.id] = str(fx_crm.cipher.open_field(CONTACT, contact, "email"))
    writer_cipher, reader_cipher, rotator = (new_cipher(fx_crm.settings) for _ in range(3))
    failures: list[str] = []

    async def write() -> None:
        customer = await fx_crm.customer(cipher=writer_cipher)  # a new subject: a new DEK, wrapped now
        email = f"during.rotation.{uuid.uuid4().hex[:8]}@example.com"
        contact = await fx_crm.contact(customer.id, cipher=writer_cipher, email=email)
        expected[contact.id] = email

    async def read() -> None:
        ids = list(expected)
        for contact_id, values in (await fx_crm.opened(ids, cipher=reader_cipher, names=("email",))).items():
            if values["email"] != expected[contact_id]:
                failures.append(f"{contact_id}: {values['email']!r}")

    result, (writes, reads) = await beside_traffic(
        lambda: keys.rotate_kek(fx_crm.sessions, rotator, batch_size=4), write, read)
    assert not failures
    assert writes and reads, "the writer and the reader must have run during the rotation"
    assert result.rewrapped >= len(customers)
    # Writers that wrapped under the old version after the last pass are picked up by a resumed rotation.
    await keys.rotate_kek(fx_crm.sessions, rotator, add_version=False)
    assert set(await fx_crm.kek_versions_in_use()) == {result.kek_version}
    fresh = new_cipher(fx_crm.settings)
    opened = await fx_crm.opened(list(expected), cipher=fresh, names=("email",))
    assert {contact_id: values["email"] for contact_id, values in opened.items()} == expected


class Interrupted(Exception):
    pass


async def test_interrupted_reencrypt_resumes_and_leaves_every_value_readable(fx_crm: Crm) -> None:
    customers = [await fx_crm.customer() for _ in range(9)]
    contacts = [await fx_crm.contact(customer.id) for customer in customers for _ in range(2)]
    before = await fx_crm.opened([contact.id for contact in contacts])
    legacy = await fx_crm.customer(tax_id=None)
    async with fx_crm.sessions() as session, write_transaction(session):
        # A row written before encryption was enabled: plaintext in an encrypted column, no blind index.
        plain = Contact(customer_id=legacy.id, name="Legacy", email="Legacy@Example.com", phone="13912345678",
                        marketing_consent=False)
        session.add(plain)

    def stop_after_two(batch: int) -> None:
        if batch == 2:
            raise Interrupted

    cipher = new_cipher(fx_crm.settings)
    with pytest.raises(Interrupted):
        await keys.reencrypt(fx_crm.sessions, cipher, batch_subjects=3, on_batch=stop_after_two)
    async with fx_crm.sessions() as session:
        job = (await session.execute(select(KeyJob).where(KeyJob.finished_at.is_(None)))).scalar_one()
    assert job.subjects_done == 6
    status = await keys.key_status(fx_crm.sessions, cipher)
    assert status.open_job is not None and status.open_job["id"] == job.id
    assert "generation 2 (active)" in status.values_per_generation  # subjects done so far
    assert "generation 1 (retired)" not in status.values_per_generation  # batches are all-or-nothing
    assert status.deks_per_state[DekState.RETIRED] >= 6
    assert "generation 1 (active)" in status.values_per_generation  # subjects not reached yet

    # Meanwhile a writer keeps working, and a new process resumes the job.
    await fx_crm.contact(customers[-1].id, email="during.reencrypt@example.com")
    resumed = await keys.reencrypt(fx_crm.sessions, new_cipher(fx_crm.settings), batch_subjects=3)
    assert resumed.resumed and resumed.job_id == job.id and resumed.finished
    assert resumed.values_resealed > 0

    fresh = new_cipher(fx_crm.settings)
    after = await fx_crm.opened([contact.id for contact in contacts], cipher=fresh)
    assert after == before
    async with fx_crm.sessions() as session:
        generations = dict((await session.execute(
            select(DataKeyRow.state, func.min(DataKeyRow.generation)).where(
                DataKeyRow.subject_id.in_([customer.id for customer in customers]))
            .group_by(DataKeyRow.state))).all())
        row = (await session.execute(select(Contact).where(Contact.id == plain.id))).scalar_one()
        await fresh.prepare(session, [row], CONTACT)
        by_email = (await session.execute(select(Contact.id).where(
            Contact.email_bidx == fresh.blind_index(CONTACT, "email", "legacy@example.com")))).scalars().all()
    assert generations[DekState.RETIRED] == 1 and generations[DekState.ACTIVE] >= 2
    assert row.email is not None and row.email.startswith(SEALED_PREFIX)
    assert fresh.open_field(CONTACT, row, "email") == "Legacy@Example.com"
    assert plain.id in by_email
    status = await keys.key_status(fx_crm.sessions, fresh)
    assert status.open_job is None
    assert "plaintext" not in status.values_per_generation
    assert not any(isinstance(value, Unreadable) for values in after.values() for value in values.values())


async def test_reencrypt_leaves_erased_values_alone(fx_crm: Crm) -> None:
    customer = await fx_crm.customer()
    await fx_crm.contact(customer.id)
    async with fx_crm.sessions() as session, write_transaction(session):
        await fx_crm.cipher.erase_subject(session, customer.id, actor="dpo", legal_basis="test")
    result = await keys.reencrypt(fx_crm.sessions, new_cipher(fx_crm.settings), batch_subjects=50)
    assert result.finished and result.values_unreadable == 0
    async with fx_crm.sessions() as session:
        states = (await session.execute(select(DataKeyRow.state).where(DataKeyRow.subject_id == customer.id))
                  ).scalars().all()
    assert list(states) == [DekState.DESTROYED]


def _run_cli(argv: list[str], settings: Any) -> int:
    parser = argparse.ArgumentParser(prog="strongroom")
    add_key_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(settings, args))


async def test_cli_status_rotate_and_reencrypt(fx_crm: Crm, capsys: pytest.CaptureFixture[str]) -> None:
    await fx_crm.contact((await fx_crm.customer()).id)
    loop = asyncio.get_running_loop()
    for argv in (["keys", "status"], ["keys", "rotate"], ["keys", "reencrypt"], ["keys", "status"],
                 ["keys", "reapply-ledger"]):
        # The handlers run their own event loop, as the console script does.
        assert await loop.run_in_executor(None, _run_cli, argv, fx_crm.settings) == 0, argv
    out = capsys.readouterr().out
    assert "DEKs per KEK version" in out and "rewrapped" in out and "values resealed" in out
    assert re.search(r"re-applied the erasure ledger: \d+ DEKs destroyed again", out)
    assert isinstance(FieldCipher.from_settings(fx_crm.settings, environ={}), FieldCipher)


async def test_key_jobs_are_audit_events(fx_crm: Crm) -> None:
    from server.audit.models import AuditPending
    from server.audit.sealer import seal_pending

    await fx_crm.contact((await fx_crm.customer()).id)
    async with fx_crm.sessions() as session:
        await seal_pending(session)
    rotated = await keys.rotate_kek(fx_crm.sessions, fx_crm.cipher)
    await keys.reencrypt(fx_crm.sessions, fx_crm.cipher)
    async with fx_crm.sessions() as session:
        rows = (await session.execute(select(AuditPending.action, AuditPending.canonical)
                                      .where(AuditPending.entity == "key").order_by(AuditPending.id))).all()
    from server.audit.canonical import decode_event

    events = [decode_event(bytes(body)) for _, body in rows]
    assert [event["action"] for event in events] == ["key_rotate"] * 3
    assert [event["reason"] for event in events] == ["KEK rotation", "DEK rotation started", "DEK rotation finished"]
    assert events[0]["after"]["kek_version"] == rotated.kek_version
    assert events[2]["after"]["values_resealed"] > 0
    # Counts and versions, never key material.
    assert set(events[0]["after"]) == {"kek_version", "added_version", "activated_staged_version", "rewrapped",
                                       "remaining"}
    assert set(events[2]["after"]) == {"job", "subjects", "values_resealed", "values_unreadable", "unreadable_subjects"}
