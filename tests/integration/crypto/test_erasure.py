"""Crypto-shredding: erasing a subject destroys its DEKs; a restore re-applies the erasure ledger."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, insert, select

from server.audit.canonical import decode_event
from server.audit.models import AuditPending
from server.db import write_transaction
from server.domain.contacts import Contact
from server.ops import keys
from server.security.data_keys import DataKeyRow, DekState
from server.security.field_cipher import ERASED

from .conftest import Crm, new_cipher


async def test_erase_subject_shreds_its_values_clears_blind_indexes_and_writes_the_ledger(fx_crm: Crm) -> None:
    erased = await fx_crm.customer()
    kept = await fx_crm.customer()
    erased_contacts = [await fx_crm.contact(erased.id) for _ in range(3)]
    kept_contact = await fx_crm.contact(kept.id, email="kept@example.com")
    record = await fx_crm.service_record(erased.id, "Customer reports the pump leaks")
    before = fx_crm.cipher.ledger.read_all()

    async with fx_crm.sessions() as session, write_transaction(session):
        destroyed = await fx_crm.cipher.erase_subject(session, erased.id, actor="dpo@example.com",
                                                      legal_basis="GDPR Art. 17 request 2026-114")
    assert len(destroyed) == 1

    after = fx_crm.cipher.ledger.read_all()
    assert len(after) == len(before) + 1
    line = after[-1]
    assert line.subject_id == str(erased.id)
    assert list(line.dek_ids) == destroyed
    assert line.actor == "dpo@example.com" and line.legal_basis == "GDPR Art. 17 request 2026-114"

    async with fx_crm.sessions() as session:
        key = (await session.execute(select(DataKeyRow).where(DataKeyRow.id == destroyed[0]))).scalar_one()
        bidx = (await session.execute(
            select(Contact.email_bidx, Contact.phone_bidx, Contact.mobile_bidx, Contact.national_id_bidx)
            .where(Contact.customer_id == erased.id))).all()
        kept_bidx = (await session.execute(select(Contact.email_bidx).where(Contact.id == kept_contact.id))
                     ).scalar_one()
    assert key.state == DekState.DESTROYED and key.wrapped is None
    assert bidx and all(value is None for row in bidx for value in row)
    assert kept_bidx is not None

    # This process, and another one started afterwards (DEK still cached elsewhere: refused at prepare).
    for cipher in (fx_crm.cipher, new_cipher(fx_crm.settings)):
        opened = await fx_crm.opened([c.id for c in erased_contacts] + [kept_contact.id], cipher=cipher)
        for contact in erased_contacts:
            assert set(opened[contact.id].values()) == {ERASED}
        assert opened[kept_contact.id]["email"] == "kept@example.com"
    from server.domain.service_records.fields import SERVICE_RECORD

    assert fx_crm.cipher.open_field(SERVICE_RECORD, record, "description") == ERASED


async def test_a_cipher_that_cached_the_key_before_the_erasure_refuses_it_at_its_next_prepare(fx_crm: Crm) -> None:
    customer = await fx_crm.customer()
    contact = await fx_crm.contact(customer.id, email="cached@example.com")
    other_process = new_cipher(fx_crm.settings)
    assert (await fx_crm.opened([contact.id], cipher=other_process))[contact.id]["email"] == "cached@example.com"
    async with fx_crm.sessions() as session, write_transaction(session):
        await fx_crm.cipher.erase_subject(session, customer.id, actor="dpo", legal_basis="test")
    opened = await fx_crm.opened([contact.id], cipher=other_process)
    assert opened[contact.id]["email"] == ERASED


async def test_new_data_after_an_erasure_gets_a_new_key(fx_crm: Crm) -> None:
    customer = await fx_crm.customer()
    old = await fx_crm.contact(customer.id)
    async with fx_crm.sessions() as session, write_transaction(session):
        await fx_crm.cipher.erase_subject(session, customer.id, actor="dpo", legal_basis="test")
    new = await fx_crm.contact(customer.id, email="new@example.com")
    opened = await fx_crm.opened([old.id, new.id])
    assert opened[old.id]["email"] == ERASED
    assert opened[new.id]["email"] == "new@example.com"


async def test_restore_of_an_older_backup_reapplies_the_ledger(fx_crm: Crm) -> None:
    customer = await fx_crm.customer()
    contact = await fx_crm.contact(customer.id, email="restored@example.com")
    async with fx_crm.sessions() as session:
        backup = [dict(row) for row in (await session.execute(
            select(DataKeyRow.__table__).where(DataKeyRow.subject_id == customer.id))).mappings()]
        backup_bidx = (await session.execute(select(Contact.email_bidx).where(Contact.id == contact.id))).scalar_one()
    async with fx_crm.sessions() as session, write_transaction(session):
        destroyed = await fx_crm.cipher.erase_subject(session, customer.id, actor="dpo", legal_basis="test")
    # "Restore": the DEK table and the blind index come back as they were in the backup.
    async with fx_crm.sessions() as session, write_transaction(session):
        await session.execute(delete(DataKeyRow.__table__).where(DataKeyRow.subject_id == customer.id))
        await session.execute(insert(DataKeyRow.__table__), backup)
        await session.execute(Contact.__table__.update().where(Contact.id == contact.id)
                              .values(email_bidx=backup_bidx))
    restarted = new_cipher(fx_crm.settings)
    # Even before re-applying, a process started after the erasure refuses the key (the ledger beside the keyring).
    assert (await fx_crm.opened([contact.id], cipher=restarted))[contact.id]["email"] == ERASED
    async with fx_crm.sessions() as session, write_transaction(session):
        again = await restarted.reapply_ledger(session)
    assert again == destroyed
    async with fx_crm.sessions() as session:
        state, wrapped = (await session.execute(select(DataKeyRow.state, DataKeyRow.wrapped)
                                                .where(DataKeyRow.id == destroyed[0]))).one()
        bidx = (await session.execute(select(Contact.email_bidx).where(Contact.id == contact.id))).scalar_one()
    assert (state, wrapped, bidx) == (DekState.DESTROYED, None, None)
    async with fx_crm.sessions() as session, write_transaction(session):
        assert await restarted.reapply_ledger(session) == []


async def test_reapplying_the_ledger_on_its_own_is_an_erase_event(fx_crm: Crm) -> None:
    """``strongroom keys reapply-ledger`` (after a restore by other means than ``backup restore``) is audited, and a
    broken ledger destroys nothing and is recorded as a failed erasure."""
    customer = await fx_crm.customer()
    await fx_crm.contact(customer.id, email="reapplied@example.com")
    async with fx_crm.sessions() as session:
        backup = [dict(row) for row in (await session.execute(
            select(DataKeyRow.__table__).where(DataKeyRow.subject_id == customer.id))).mappings()]
    async with fx_crm.sessions() as session, write_transaction(session):
        destroyed = await fx_crm.cipher.erase_subject(session, customer.id, actor="dpo", legal_basis="test")
    async with fx_crm.sessions() as session, write_transaction(session):  # the key rows come back from a backup
        await session.execute(delete(DataKeyRow.__table__).where(DataKeyRow.subject_id == customer.id))
        await session.execute(insert(DataKeyRow.__table__), backup)

    assert await keys.reapply_ledger(fx_crm.sessions, new_cipher(fx_crm.settings)) == destroyed
    recorded = await _erase_events_of_key_jobs(fx_crm)
    assert recorded[-1]["outcome"] == "ok"
    assert recorded[-1]["after"] == {"deks_destroyed": len(destroyed), "dek_ids": [str(d) for d in destroyed]}

    restarted = new_cipher(fx_crm.settings)
    ledger = fx_crm.settings.resolved_erasure_ledger_path
    intact = ledger.read_bytes()
    ledger.write_bytes(intact.replace(b'"', b"'", 1))  # the MAC chain no longer holds
    try:
        async with fx_crm.sessions() as session, write_transaction(session):  # restored again
            await session.execute(delete(DataKeyRow.__table__).where(DataKeyRow.subject_id == customer.id))
            await session.execute(insert(DataKeyRow.__table__), backup)
        with pytest.raises(ValueError, match="ledger"):
            await keys.reapply_ledger(fx_crm.sessions, restarted)
    finally:
        ledger.write_bytes(intact)  # the ledger is shared by the other tests of this database
    recorded = await _erase_events_of_key_jobs(fx_crm)
    assert recorded[-1]["outcome"] == "error" and "deks_destroyed" not in recorded[-1]["after"]
    async with fx_crm.sessions() as session:
        states = (await session.execute(select(DataKeyRow.state).where(DataKeyRow.subject_id == customer.id))
                  ).scalars().all()
    assert DekState.DESTROYED not in states  # nothing was destroyed on the strength of a broken ledger
    # The ledger intact again: the restored keys are destroyed, as the other tests of this database expect.
    assert await keys.reapply_ledger(fx_crm.sessions, new_cipher(fx_crm.settings)) == destroyed


async def _erase_events_of_key_jobs(fx_crm: Crm) -> list[dict[str, Any]]:
    async with fx_crm.sessions() as session:
        bodies = (await session.execute(
            select(AuditPending.canonical).where(AuditPending.entity == "key", AuditPending.action == "erase")
            .order_by(AuditPending.id))).scalars().all()
    return [dict(decode_event(bytes(body))) for body in bodies]
