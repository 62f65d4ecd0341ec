"""Sealed fields in the database: no plaintext at rest, values bound to their row and column, blind indexes."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select, text

from server.db import write_transaction
from server.domain.contacts import CONTACT, Contact
from server.security.data_keys import DataKeyRow, DekState
from server.security.field_cipher import UNDECRYPTABLE, Unreadable

from .conftest import Crm, new_cipher

SEALED_COLUMNS = ("email", "phone", "mobile", "address", "national_id")


async def test_raw_sql_shows_no_plaintext_after_seal_and_flush(fx_crm: Crm) -> None:
    customer = await fx_crm.customer(tax_id="91310000MA1FL8XQ3K")
    values = {"email": "Li.Na@Example.com", "phone": "021-6888-1234", "mobile": "+86 139 1234 5678",
              "address": "北京市朝阳区建国路 88 号", "national_id": "110105194912310021"}
    contact = await fx_crm.contact(customer.id, **values)
    async with fx_crm.sessions() as session:
        row = (await session.execute(
            text("SELECT email, phone, mobile, address, national_id, email_bidx FROM contacts WHERE id = :id"),
            {"id": contact.id if fx_crm.backend == "postgresql" else contact.id.hex})).one()
        tax = (await session.execute(text("SELECT tax_id FROM customers WHERE name = :name"),
                                     {"name": customer.name})).scalar_one()
    stored = dict(zip(SEALED_COLUMNS, row[:5], strict=True))
    for name, plaintext in values.items():
        assert stored[name].startswith("sr:"), name
        assert plaintext not in stored[name]
        for fragment in ("Li.Na", "6888", "1234 5678", "建国路", "19491231"):
            assert fragment not in stored[name]
    assert row[5] is not None
    assert tax.startswith("sr:") and "MA1FL8" not in tax
    opened = await fx_crm.opened([contact.id])
    assert opened[contact.id] == values


async def test_values_already_sealed_are_left_alone_and_none_stays_none(fx_crm: Crm) -> None:
    customer = await fx_crm.customer()
    contact = await fx_crm.contact(customer.id, address=None, mobile=None)
    sealed_email = contact.email
    assert contact.mobile_bidx is None and contact.address is None
    async with fx_crm.sessions() as session, write_transaction(session):
        await fx_crm.cipher.seal_fields(session, CONTACT, contact, customer.id, ["email", "address", "title"])
    assert contact.email == sealed_email


async def test_ciphertext_copied_to_another_row_or_column_does_not_open(fx_crm: Crm) -> None:
    customer = await fx_crm.customer()
    victim = await fx_crm.contact(customer.id, email="victim@example.com", phone="13800000001")
    attacker = await fx_crm.contact(customer.id, email="attacker@example.com", phone="13800000002")
    other_customer = await fx_crm.customer()
    elsewhere = await fx_crm.contact(other_customer.id, email="elsewhere@example.com")
    async with fx_crm.sessions() as session, write_transaction(session):
        # Another row of the same subject (same DEK), another subject's row, and another column of the same row.
        await session.execute(text("UPDATE contacts SET email = :token WHERE id = :id"),
                              {"token": victim.email, "id": _id(fx_crm, attacker.id)})
        await session.execute(text("UPDATE contacts SET email = :token WHERE id = :id"),
                              {"token": victim.email, "id": _id(fx_crm, elsewhere.id)})
        await session.execute(text("UPDATE contacts SET mobile = phone WHERE id = :id"),
                              {"id": _id(fx_crm, victim.id)})
    for cipher in (fx_crm.cipher, new_cipher(fx_crm.settings)):
        opened = await fx_crm.opened([victim.id, attacker.id, elsewhere.id], cipher=cipher)
        assert opened[attacker.id]["email"] == UNDECRYPTABLE
        assert opened[elsewhere.id]["email"] == UNDECRYPTABLE
        assert opened[victim.id]["mobile"] == UNDECRYPTABLE
        assert opened[victim.id]["email"] == "victim@example.com"
        assert opened[victim.id]["phone"] == "13800000001"
        assert opened[attacker.id]["phone"] == "13800000002"


async def test_tampered_or_truncated_ciphertext_is_unreadable(fx_crm: Crm) -> None:
    customer = await fx_crm.customer()
    contact = await fx_crm.contact(customer.id)
    token = contact.address
    assert token is not None
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    async with fx_crm.sessions() as session, write_transaction(session):
        await session.execute(text("UPDATE contacts SET address = :a, email = :e, phone = :p WHERE id = :id"),
                              {"a": flipped, "e": token[:40], "p": "sr:not-a-token", "id": _id(fx_crm, contact.id)})
    opened = (await fx_crm.opened([contact.id]))[contact.id]
    assert opened["address"] == UNDECRYPTABLE
    assert opened["email"] == UNDECRYPTABLE
    assert opened["phone"] == UNDECRYPTABLE
    assert isinstance(opened["address"], Unreadable) and opened["address"].reason == "undecryptable"
    assert opened["mobile"] == "138 0013 8000"


async def test_blind_index_finds_email_and_phone_in_other_spellings(fx_crm: Crm) -> None:
    customer = await fx_crm.customer()
    email = f"Wang.Fang.{uuid.uuid4().hex[:6]}@Example.COM"
    contact = await fx_crm.contact(customer.id, email=email, mobile="138-0013-8000", national_id="11010519491231002x")
    await fx_crm.contact(customer.id, email=f"other.{uuid.uuid4().hex[:6]}@example.com")
    cipher = new_cipher(fx_crm.settings)
    column = getattr(Contact, cipher.blind_index_column("email"))
    for query in (email.lower(), f"  {email.upper()} ", f"\t{email}\n"):
        async with fx_crm.sessions() as session:
            found = list((await session.execute(
                select(Contact).where(column == cipher.blind_index(CONTACT, "email", query)))).scalars())
            await cipher.prepare(session, found, CONTACT)
        matches = [row.id for row in found
                   if cipher.same_value(CONTACT, "email", str(cipher.open_field(CONTACT, row, "email")), query)]
        assert matches == [contact.id], query
    async with fx_crm.sessions() as session:
        by_mobile = (await session.execute(select(Contact.id).where(
            Contact.mobile_bidx == cipher.blind_index(CONTACT, "mobile", "+86 13800138000"),
            Contact.customer_id == customer.id))).scalars().all()
        by_id = (await session.execute(select(Contact.id).where(
            Contact.national_id_bidx == cipher.blind_index(CONTACT, "national_id", "110105 19491231 002X")))
        ).scalars().all()
    assert contact.id in by_mobile
    assert list(by_id).count(contact.id) == 1


async def test_concurrent_first_writes_of_a_subject_share_one_dek(fx_crm: Crm) -> None:
    customer = await fx_crm.customer(tax_id=None)
    ciphers = [new_cipher(fx_crm.settings) for _ in range(4)]
    contacts = await asyncio.gather(*(fx_crm.contact(customer.id, cipher=cipher) for cipher in ciphers))
    async with fx_crm.sessions() as session:
        states = (await session.execute(select(DataKeyRow.state).where(DataKeyRow.subject_id == customer.id))
                  ).scalars().all()
    assert list(states) == [DekState.ACTIVE]
    opened = await fx_crm.opened([contact.id for contact in contacts], cipher=new_cipher(fx_crm.settings))
    assert all(not isinstance(value, Unreadable) for values in opened.values() for value in values.values())


def _id(crm: Crm, record_id: uuid.UUID) -> object:
    """Raw SQL parameters: SQLite stores UUIDs as 32 hex characters, PostgreSQL as uuid."""
    return record_id if crm.backend == "postgresql" else record_id.hex
