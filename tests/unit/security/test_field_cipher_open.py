"""FieldCipher on its own: sealing, opening, binding, blind indexes, erasure (a scratch SQLite schema)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import delete, event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db import create_engine, create_session_factory
from server.domain.base import Base
from server.domain.contacts import CONTACT
from server.domain.customers.fields import CUSTOMER
from server.domain.fields import EntitySpec
from server.domain.opportunities.fields import OPPORTUNITY
from server.ids import new_id
from server.models import import_all_models
from server.security.crypto import DecryptionError, ErasureLedger, Keyring, NormalisationError
from server.security.data_keys import TOKEN_PREFIX_CHARS, DataKeyRow, token_prefix
from server.security.field_cipher import ERASED, UNDECRYPTABLE, FieldCipher, Unreadable
from server.security.identity.models import SecurityState

CONTACT_FIELDS = ("email", "phone", "mobile", "address", "national_id")


@pytest.fixture(name="sessions")
async def fx_sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    import_all_models()
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


def make_cipher(tmp_path: Path, keyring: Keyring | None = None, **options: Any) -> FieldCipher:
    keyring = keyring or Keyring.generate()
    ledger = ErasureLedger(tmp_path / "ledger.jsonl", keyring.ledger_key, keyring.suite)
    return FieldCipher(keyring, blind_indexer=keyring.blind_indexer(), ledger=ledger, **options)


def contact(customer_id: uuid.UUID, **values: Any) -> SimpleNamespace:
    fields: dict[str, Any] = dict.fromkeys(CONTACT_FIELDS)
    fields.update({f"{name}_bidx": None for name in ("email", "phone", "mobile", "national_id")})
    fields.update(values)
    return SimpleNamespace(id=new_id(), customer_id=customer_id, title="CFO", **fields)


async def sealed_contact(cipher: FieldCipher, sessions: async_sessionmaker[AsyncSession],
                         customer_id: uuid.UUID, **values: Any) -> SimpleNamespace:
    record = contact(customer_id, **values)
    async with sessions() as session, session.begin():
        await cipher.seal_fields(session, CONTACT, record, customer_id, [*values, "title"])
    return record


async def test_seal_then_open_round_trip_and_blind_indexes(tmp_path: Path, sessions: Any) -> None:
    cipher = make_cipher(tmp_path)
    subject = new_id()
    record = await sealed_contact(cipher, sessions, subject, email="Zhang.Wei@Example.com", phone="021 6888 1234",
                                  address="上海市", national_id="11010519491231002x")
    assert record.title == "CFO"  # not an encrypted field: untouched
    for name in ("email", "phone", "address", "national_id"):
        assert record.__dict__[name].startswith("sr:")
    assert record.mobile is None and record.mobile_bidx is None
    assert record.email_bidx == cipher.blind_index(CONTACT, "email", " zhang.wei@EXAMPLE.com ")
    assert record.phone_bidx == cipher.blind_index(CONTACT, "phone", "+86 21 6888 1234")
    assert record.national_id_bidx == cipher.blind_index(CONTACT, "national_id", "110105-19491231-002X")
    # The email key differs from the phone key: equal text does not index alike across fields.
    assert cipher.blind_index(CONTACT, "phone", "13800138000") != cipher.blind_index(CONTACT, "mobile", "13800138000")
    assert cipher.open_field(CONTACT, record, "email") == "Zhang.Wei@Example.com"
    assert cipher.open_field(CONTACT, record, "mobile") is None
    assert cipher.open_field(CONTACT, record, "title") == "CFO"


async def test_token_prefix_is_what_sealed_values_start_with(tmp_path: Path, sessions: Any) -> None:
    cipher = make_cipher(tmp_path)
    subject = new_id()
    record = await sealed_contact(cipher, sessions, subject, email="a@example.com")
    async with sessions() as session:
        dek = await cipher.active_dek(session, subject, create=False)
    assert record.email.startswith(token_prefix(dek.id, dek.suite))
    assert len(token_prefix(dek.id, dek.suite)) == TOKEN_PREFIX_CHARS


async def test_one_dek_per_subject_reused_across_transactions(tmp_path: Path, sessions: Any) -> None:
    cipher = make_cipher(tmp_path)
    subject, other = new_id(), new_id()
    first = await sealed_contact(cipher, sessions, subject, email="a@example.com")
    second = await sealed_contact(cipher, sessions, subject, email="b@example.com")
    third = await sealed_contact(cipher, sessions, other, email="c@example.com")
    prefix = first.email[:TOKEN_PREFIX_CHARS]
    assert second.email[:TOKEN_PREFIX_CHARS] == prefix
    assert third.email[:TOKEN_PREFIX_CHARS] != prefix


async def test_moved_or_tampered_values_are_unreadable_never_another_rows_plaintext(tmp_path: Path,
                                                                                   sessions: Any) -> None:
    cipher = make_cipher(tmp_path)
    subject = new_id()
    victim = await sealed_contact(cipher, sessions, subject, email="victim@example.com", phone="13800000001")
    other = await sealed_contact(cipher, sessions, subject, email="other@example.com", phone="13800000002")
    other.email = victim.email  # another row, same DEK
    victim.mobile = victim.phone  # another column, same row
    flipped = victim.phone[:-2] + ("A" if victim.phone[-2] != "A" else "B") + victim.phone[-1]
    tampered = contact(subject, phone=flipped)
    tampered.id = victim.id
    assert cipher.open_field(CONTACT, other, "email") == UNDECRYPTABLE
    assert cipher.open_field(CONTACT, victim, "mobile") == UNDECRYPTABLE
    assert cipher.open_field(CONTACT, tampered, "phone") == UNDECRYPTABLE
    assert cipher.open_field(CONTACT, victim, "phone") == "13800000001"
    # A value sealed for a contact does not open as a customer's field either (another table).
    customer = SimpleNamespace(id=victim.id, tax_id=victim.email)
    assert cipher.open_field(CUSTOMER, customer, "tax_id") == UNDECRYPTABLE


async def test_unknown_key_and_destroyed_key(tmp_path: Path, sessions: Any) -> None:
    writer = make_cipher(tmp_path)
    keyring = writer.provider
    assert isinstance(keyring, Keyring)
    subject = new_id()
    record = await sealed_contact(writer, sessions, subject, email="a@example.com")
    (tmp_path / "other").mkdir()
    (tmp_path / "stranger").mkdir()
    reader = make_cipher(tmp_path / "other", keyring)  # another process: empty cache
    assert reader.open_field(CONTACT, record, "email") == UNDECRYPTABLE  # not prepared: key not loaded
    async with sessions() as session:
        await reader.prepare(session, [record], CONTACT)
    assert reader.open_field(CONTACT, record, "email") == "a@example.com"
    stranger = make_cipher(tmp_path / "stranger")  # a different keyring cannot unwrap the DEK
    async with sessions() as session:
        await stranger.prepare(session, [record], CONTACT)
    assert stranger.open_field(CONTACT, record, "email") == UNDECRYPTABLE
    async with sessions() as session, session.begin():
        destroyed = await writer.erase_subject(session, subject, actor="dpo", legal_basis="test")
    assert len(destroyed) == 1
    assert writer.open_field(CONTACT, record, "email") == ERASED
    async with sessions() as session:
        await reader.prepare(session, [record], CONTACT)
    erased = reader.open_field(CONTACT, record, "email")
    assert isinstance(erased, Unreadable) and erased.reason == "erased" and str(erased) == "[erased]"


async def test_seal_fields_checks_the_record(tmp_path: Path, sessions: Any) -> None:
    cipher = make_cipher(tmp_path)
    subject = new_id()
    record = contact(subject, email="a@example.com")
    async with sessions() as session:
        with pytest.raises(ValueError, match="subject"):
            await cipher.seal_fields(session, CONTACT, record, new_id(), ["email"])
        record.id = None
        with pytest.raises(ValueError, match="record id"):
            await cipher.seal_fields(session, CONTACT, record, subject, ["email"])
    assert record.email == "a@example.com"


async def test_already_sealed_values_and_legacy_plaintext(tmp_path: Path, sessions: Any) -> None:
    cipher = make_cipher(tmp_path)
    subject = new_id()
    record = await sealed_contact(cipher, sessions, subject, email="a@example.com")
    token, bidx = record.email, record.email_bidx
    async with sessions() as session, session.begin():
        await cipher.seal_fields(session, CONTACT, record, subject, ["email"])
    assert (record.email, record.email_bidx) == (token, bidx)
    # Text that only looks like a token is sealed like any other text.
    looks_sealed = await sealed_contact(cipher, sessions, subject, address="sr:this is my address")
    assert cipher.open_field(CONTACT, looks_sealed, "address") == "sr:this is my address"
    # Plaintext stored before encryption was enabled reads as stored (``keys reencrypt`` seals it).
    assert cipher.open_field(CONTACT, contact(subject, email="old@example.com"), "email") == "old@example.com"


def test_blind_index_normalisation_and_same_value(tmp_path: Path) -> None:
    cipher = make_cipher(tmp_path)
    index = cipher.blind_index
    assert index(CONTACT, "email", "Li.Na@Example.COM") == index(CONTACT, "email", "  li.na@example.com\t")
    assert index(CONTACT, "mobile", "138 0013 8000") == index(CONTACT, "mobile", "+86-138-0013-8000")
    assert index(CONTACT, "mobile", "138 0013 8000") == index(CONTACT, "mobile", "0086 13800138000")
    assert index(CONTACT, "national_id", "11010519491231002x") == index(CONTACT, "national_id", "110105 19491231 002X")
    assert index(CONTACT, "email", "a@example.com") != index(CONTACT, "email", "b@example.com")
    # Not a phone number: indexed as text, so the same spelling still matches.
    assert index(CONTACT, "phone", "ext. 12") == index(CONTACT, "phone", " ext. 12 ")
    with pytest.raises(NormalisationError):
        index(CONTACT, "email", "   ")
    assert cipher.blind_index_column("email") == "email_bidx"
    assert cipher.same_value(CONTACT, "email", "A@Example.com", " a@example.COM")
    assert cipher.same_value(CONTACT, "phone", "021 6888 1234", "+86 21 68881234")
    assert not cipher.same_value(CONTACT, "phone", "021 6888 1234", "021 6888 1235")
    us = make_cipher(tmp_path, default_country_code="+1")
    assert us.same_value(CONTACT, "phone", "(415) 555-0100", "+1 415 555 0100")


def test_encrypted_fields_and_extra_fields(tmp_path: Path) -> None:
    cipher = make_cipher(tmp_path, extra_encrypted=["customer.notes", "opportunity.loss_reason"])
    assert cipher.encrypted_fields(CONTACT) == {"email", "phone", "mobile", "address", "national_id"}
    assert cipher.encrypted_fields(CUSTOMER) == {"tax_id", "notes"}
    assert cipher.encrypted_fields(OPPORTUNITY) == {"loss_reason"}
    assert make_cipher(tmp_path).encrypted_fields(OPPORTUNITY) == frozenset()
    assert make_cipher(tmp_path).encrypted_fields(EntitySpec("unknown", ())) == frozenset()
    for bad, message in (("contact.title", "must be TEXT"), ("contact.name", "neither sorted"),
                         ("customer.nope", "no field"), ("nothing.notes", "entity.field"),
                         ("customer.kind", "neither sorted")):
        with pytest.raises(ValueError, match=message):
            make_cipher(tmp_path, extra_encrypted=[bad])


async def test_extra_field_is_sealed(tmp_path: Path, sessions: Any) -> None:
    cipher = make_cipher(tmp_path, extra_encrypted=["customer.notes"])
    customer = SimpleNamespace(id=new_id(), tax_id=None, notes="prefers WeChat, not email")
    async with sessions() as session, session.begin():
        await cipher.seal_fields(session, CUSTOMER, customer, customer.id, ["notes", "tax_id"])
    assert customer.notes.startswith("sr:") and "WeChat" not in customer.notes
    assert cipher.open_field(CUSTOMER, customer, "notes") == "prefers WeChat, not email"


async def test_a_keyring_that_cannot_unwrap_the_subjects_key_refuses_to_seal(tmp_path: Path, sessions: Any) -> None:
    owner = make_cipher(tmp_path)
    subject = new_id()
    await sealed_contact(owner, sessions, subject, email="a@example.com")
    (tmp_path / "stranger").mkdir()
    stranger = make_cipher(tmp_path / "stranger")
    record = contact(subject, email="b@example.com")
    async with sessions() as session, session.begin():
        with pytest.raises(DecryptionError):
            await stranger.seal_fields(session, CONTACT, record, subject, ["email"])
    assert record.email == "b@example.com"
    async with sessions() as session:
        states = (await session.execute(select(DataKeyRow.state).where(DataKeyRow.subject_id == subject))).scalars()
        assert list(states) == ["active"]  # the key was not replaced or destroyed


async def test_creating_a_dek_does_not_flush_the_callers_pending_objects(tmp_path: Path, sessions: Any) -> None:
    from server.domain.customers.models import Customer

    cipher = make_cipher(tmp_path)
    async with sessions() as session, session.begin():
        pending = Customer(name="Half built", kind="company", owner_id=new_id(), tags=[])  # owner FK unmet yet
        session.add(pending)
        await cipher.seal_fields(session, CUSTOMER, pending, pending.id, [])
        pending.tax_id = "91310000MA1FL8XQ3K"
        await cipher.seal_fields(session, CUSTOMER, pending, pending.id, ["tax_id"])
        assert pending in session.new
        session.expunge(pending)


# --- how soon a cached key's destruction is seen, and what a cached key costs ---------------------------------


async def _set_security_version(sessions: async_sessionmaker[AsyncSession], version: int) -> None:
    async with sessions() as session, session.begin():
        await session.execute(delete(SecurityState))
        session.add(SecurityState(id=1, version=version))


def _count_data_key_reads(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    statements: list[str] = []
    engine = sessions.kw["bind"]

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM data_keys" in statement:
            statements.append(statement)

    return statements


async def test_a_confirmed_key_costs_no_query_until_the_security_version_moves(tmp_path: Path, sessions: Any) -> None:
    await _set_security_version(sessions, 1)
    writer = make_cipher(tmp_path)
    record = await sealed_contact(writer, sessions, new_id(), email="a@example.com")
    (tmp_path / "reader").mkdir()
    reader = make_cipher(tmp_path / "reader", writer.provider, key_state_poll_seconds=0)
    reads = _count_data_key_reads(sessions)
    for _ in range(3):
        async with sessions() as session:
            await reader.prepare(session, [record], CONTACT)
        assert reader.open_field(CONTACT, record, "email") == "a@example.com"
    assert len(reads) == 1
    await _set_security_version(sessions, 2)  # any security change (a policy edit, an erasure elsewhere)
    async with sessions() as session:
        await reader.prepare(session, [record], CONTACT)
    assert len(reads) == 2


async def test_a_held_key_read_beside_its_records_is_confirmed_without_a_query(tmp_path: Path, sessions: Any) -> None:
    """After the security version moves, a key the worker holds and reads again beside a page of records (each row
    repeating it) is confirmed at the new version: the ``prepare`` that follows asks nothing more."""
    await _set_security_version(sessions, 1)
    writer = make_cipher(tmp_path)
    subject = new_id()
    records = [await sealed_contact(writer, sessions, subject, email=f"{n}@example.com") for n in range(3)]
    (tmp_path / "reader").mkdir()
    reader = make_cipher(tmp_path / "reader", writer.provider, key_state_poll_seconds=0)
    async with sessions() as session:
        await reader.prepare(session, records, CONTACT)
        wrapped = (await session.execute(select(DataKeyRow.wrapped).where(DataKeyRow.subject_id == subject))
                   ).scalar_one()
    await _set_security_version(sessions, 2)
    reads = _count_data_key_reads(sessions)
    async with sessions() as session:
        version = await reader.key_state_version(session)
        reader.absorb_subject_keys(version, [(wrapped,), (wrapped,), (None,), (b"not a wrapped key",)])
        await reader.prepare(session, records, CONTACT)
    assert reads == []
    assert [reader.open_field(CONTACT, record, "email") for record in records] == [f"{n}@example.com" for n in range(3)]


async def _reader_of_a_subject(tmp_path: Path, sessions: Any, *, host: str | None, poll_seconds: float
                               ) -> tuple[FieldCipher, FieldCipher, uuid.UUID, SimpleNamespace]:
    """A writer, a subject with one sealed contact, and a reader that has opened it (its key cached and
    confirmed). ``host``: the reader's own keys directory (another host's ledger); None shares the writer's."""
    await _set_security_version(sessions, 1)
    writer = make_cipher(tmp_path)
    subject = new_id()
    record = await sealed_contact(writer, sessions, subject, email="a@example.com")
    if host is not None:
        (tmp_path / host).mkdir()
    reader = make_cipher(tmp_path / host if host else tmp_path, writer.provider, key_state_poll_seconds=poll_seconds)
    async with sessions() as session:
        await reader.prepare(session, [record], CONTACT)
    assert reader.open_field(CONTACT, record, "email") == "a@example.com"
    return writer, reader, subject, record


async def test_an_erasure_on_another_host_is_refused_once_the_version_is_polled(tmp_path: Path, sessions: Any) -> None:
    # Its own erasure ledger: the reader learns of the erasure from the database only.
    writer, reader, subject, record = await _reader_of_a_subject(tmp_path, sessions, host="host-b", poll_seconds=0.2)
    async with sessions() as session, session.begin():
        await writer.erase_subject(session, subject, actor="dpo", legal_basis="test")
    async with sessions() as session:
        assert (await session.execute(select(SecurityState.version))).scalar_one() == 2
    await asyncio.sleep(0.25)
    async with sessions() as session:
        await reader.prepare(session, [record], CONTACT)
    assert reader.open_field(CONTACT, record, "email") == ERASED


async def test_an_erasure_on_this_host_is_refused_at_once_through_the_ledger(tmp_path: Path, sessions: Any) -> None:
    writer, reader, subject, record = await _reader_of_a_subject(tmp_path, sessions, host=None, poll_seconds=3600)
    async with sessions() as session, session.begin():
        await writer.erase_subject(session, subject, actor="dpo", legal_basis="test")
    async with sessions() as session:
        await reader.prepare(session, [record], CONTACT)
    assert reader.open_field(CONTACT, record, "email") == ERASED


async def test_an_unreadable_ledger_makes_every_prepare_ask_the_database(tmp_path: Path, sessions: Any) -> None:
    writer, reader, subject, record = await _reader_of_a_subject(tmp_path, sessions, host="host-b", poll_seconds=3600)
    kept = await sealed_contact(writer, sessions, new_id(), email="kept@example.com")
    async with sessions() as session, session.begin():
        await writer.erase_subject(session, subject, actor="dpo", legal_basis="test")  # on another host
    (tmp_path / "host-b" / "ledger.jsonl").write_text("not a ledger line\n")  # this host's ledger breaks
    reads = _count_data_key_reads(sessions)
    for _ in range(2):
        async with sessions() as session:
            await reader.prepare(session, [record, kept], CONTACT)
        assert reader.open_field(CONTACT, record, "email") == ERASED
        assert reader.open_field(CONTACT, kept, "email") == "kept@example.com"
    assert len(reads) == 2  # not trusted from the cache while the ledger cannot be read
