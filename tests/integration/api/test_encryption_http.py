"""Column encryption through the API, checked against what the database really holds."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text

from server.audit.canonical import decode_event
from server.security.field_cipher import FieldCipher, Unreadable

SECRETS = {"email": "Mei.Ling@Example.com", "phone": "+86 138 0013 8123", "national_id": "110101199107077777",
           "address": "北京市朝阳区建国路88号"}


async def _subject(fx_api: Any, headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    customer = (await fx_api.client.post("/api/v1/customers", headers=headers, json={
        "name": "Mei Ling", "kind": "individual", "tax_id": "TAX-SECRET-991"})).json()
    contact = await fx_api.client.post("/api/v1/contacts", headers=headers, json={
        "customer_id": customer["id"], "name": "Mei Ling", "email": f"{uuid.uuid4().hex[:6]}.{SECRETS['email']}",
        "phone": SECRETS["phone"], "national_id": f"{uuid.uuid4().int % 10**17:017d}X",
        "address": SECRETS["address"]})
    assert contact.status_code == 201, contact.text
    return customer, dict(contact.json())


async def test_database_holds_no_plaintext(fx_api: Any) -> None:
    rep = await fx_api.login(["sales_rep"])
    _customer, contact = await _subject(fx_api, rep)
    async with fx_api.session_factory() as session:
        row = (await session.execute(text(
            "SELECT email, phone, national_id, address, email_bidx FROM contacts WHERE id = :id"),
            {"id": contact["id"] if fx_api.backend == "postgresql" else contact["id"].replace("-", "")})).one()
        tax = (await session.execute(text("SELECT tax_id FROM customers WHERE name = 'Mei Ling' AND tax_id IS NOT NULL"
                                          ))).scalars().all()
    assert all(value.startswith("sr:") for value in row[:4])
    assert contact["email"] not in row[0] and SECRETS["address"] not in row[3]
    assert row[4] is not None
    assert all("TAX-SECRET-991" not in value for value in tax)
    assert contact["phone"] == SECRETS["phone"]  # the owner reads it in clear through the API


async def test_search_by_blind_index_and_duplicates(fx_api: Any) -> None:
    rep, other_rep = await fx_api.login(["sales_rep"]), await fx_api.login(["sales_rep"])
    customer, contact = await _subject(fx_api, rep)
    found = await fx_api.client.get("/api/v1/contacts", params={"email": f"  {contact['email'].upper()} "},
                                    headers=rep)
    assert [item["id"] for item in found.json()["items"]] == [contact["id"]]
    by_phone = await fx_api.client.get("/api/v1/contacts", params={"phone": "13800138123"}, headers=rep)
    assert contact["id"] in [item["id"] for item in by_phone.json()["items"]]
    nothing = await fx_api.client.get("/api/v1/contacts", params={"email": "absent@example.com"}, headers=rep)
    assert nothing.json()["items"] == []

    again = await fx_api.client.post("/api/v1/contacts", headers=rep, json={
        "customer_id": customer["id"], "name": "Copy", "email": contact["email"].lower()})
    assert again.status_code == 409
    assert again.json()["existing_id"] == contact["id"]
    own = (await fx_api.client.post("/api/v1/customers", headers=other_rep,
                                    json={"name": "Elsewhere", "kind": "company"})).json()
    unseen = await fx_api.client.post("/api/v1/contacts", headers=other_rep, json={
        "customer_id": own["id"], "name": "Copy", "email": contact["email"]})
    assert unseen.status_code == 409
    assert "existing_id" not in unseen.json()


async def test_an_export_by_email_keeps_the_searched_value_out_of_the_trail(fx_api: Any) -> None:
    manager = await fx_api.login(["sales_manager"])
    _customer, contact = await _subject(fx_api, manager)
    exported = await fx_api.client.get("/api/v1/contacts/export", params={"email": contact["email"]},
                                       headers=manager)
    assert exported.status_code == 200, exported.text
    assert contact["id"] in exported.text
    await fx_api.seal()
    async with fx_api.session_factory() as session:
        events = [decode_event(bytes(row[0])) for row in (await session.execute(text(
            "SELECT canonical FROM audit_events WHERE action = 'export' AND entity = 'contact' "
            "ORDER BY seq DESC LIMIT 1"))).all()]
    (event,) = events
    assert event["after"]["filters"] == {"email": "[sensitive]"}  # which field was searched, not the value
    assert contact["email"].lower() not in str(event).lower()


async def test_moved_ciphertext_does_not_decrypt(fx_api: Any) -> None:
    rep = await fx_api.login(["sales_rep"])
    _customer, victim = await _subject(fx_api, rep)
    _other, target = await _subject(fx_api, rep)
    key = (lambda value: value) if fx_api.backend == "postgresql" else (lambda value: value.replace("-", ""))
    async with fx_api.session_factory() as session, session.begin():
        await session.execute(text(
            "UPDATE contacts SET email = (SELECT email FROM contacts WHERE id = :victim), "
            "phone = (SELECT national_id FROM contacts WHERE id = :target) WHERE id = :target"),
            {"victim": key(victim["id"]), "target": key(target["id"])})
    response = await fx_api.client.get(f"/api/v1/contacts/{target['id']}", headers=rep)
    assert response.status_code == 200
    body = response.json()
    assert body["email"] is None and body["phone"] is None
    assert body["unreadable_fields"] == {"email": "undecryptable", "phone": "undecryptable"}
    assert victim["email"] not in response.text
    assert body["address"] == SECRETS["address"]


async def test_erasure_shreds_tables_and_audit_values_and_the_chain_still_verifies(fx_api: Any) -> None:
    manager = await fx_api.login(["sales_manager"])
    auditor = await fx_api.login(["auditor"])
    customer, contact = await _subject(fx_api, manager)
    email = contact["email"]
    rep = await fx_api.login(["sales_rep"])
    refused = await fx_api.client.post(f"/api/v1/customers/{customer['id']}/erase", headers=rep,
                                       json={"legal_basis": "GDPR Art. 17"})
    assert refused.status_code in {403, 404}
    no_basis = await fx_api.client.post(f"/api/v1/customers/{customer['id']}/erase", headers=manager,
                                        json={"legal_basis": " "})
    assert no_basis.status_code == 422
    erased = await fx_api.client.post(f"/api/v1/customers/{customer['id']}/erase", headers=manager,
                                      json={"legal_basis": "GDPR Art. 17 request 2026-114"})
    assert erased.status_code == 200, erased.text

    tombstone = (await fx_api.client.get(f"/api/v1/customers/{customer['id']}", headers=manager)).json()
    assert tombstone["name"] == "[erased]"
    assert tombstone["unreadable_fields"] == {"tax_id": "erased"}
    after = (await fx_api.client.get(f"/api/v1/contacts/{contact['id']}", headers=manager)).json()
    assert after["email"] is None and after["unreadable_fields"]["email"] == "erased"
    assert email not in str(after)
    search = await fx_api.client.get("/api/v1/contacts", params={"email": email}, headers=manager)
    assert search.json()["items"] == []

    events = (await fx_api.client.get("/api/v1/audit/events", params={"customer_id": customer["id"]},
                                      headers=auditor)).json()["items"]
    erase = next(event for event in events if event["action"] == "erase")
    assert erase["reason"] == "GDPR Art. 17 request 2026-114"
    assert erase["after"]["destroyed_keys"]
    cipher = fx_api.app.state.resources.cipher
    sealed_values = [value for event in events for values in (event["before"], event["after"]) if values
                     for value in values.values() if isinstance(value, str) and value.startswith("sr:")]
    assert sealed_values
    async with fx_api.session_factory() as session:
        await cipher.prepare_tokens(session, sealed_values)
    for value in sealed_values:
        from server.domain.contacts import CONTACT

        opened = cipher.open_value(CONTACT, "email", uuid.UUID(contact["id"]), value)
        assert isinstance(opened, Unreadable)
    await fx_api.seal()
    async with fx_api.session_factory() as session:
        stored = (await session.execute(text("SELECT canonical FROM audit_events WHERE subject_id = :s"),
                                        {"s": customer["id"]})).scalars().all()
    assert all(email.encode() not in bytes(body) for body in stored)
    assert all(decode_event(bytes(body)) for body in stored)
    verdict = (await fx_api.client.get("/api/v1/audit/verify", headers=auditor)).json()
    assert verdict["ok"], verdict


@asynccontextmanager
async def _cold_worker(fx_api: Any) -> AsyncIterator[list[str]]:
    """The app with a fresh cipher, as a worker that has not met the subjects' data keys yet; yields the SQL it
    runs meanwhile."""
    resources = fx_api.app.state.resources
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    fx_api.app.state.resources = dataclasses.replace(resources, cipher=FieldCipher.from_settings(resources.settings))
    event.listen(resources.engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(resources.engine.sync_engine, "before_cursor_execute", seen)
        fx_api.app.state.resources = resources


async def test_a_worker_without_the_key_reads_it_beside_the_record_in_one_statement(fx_api: Any) -> None:
    rep = await fx_api.login(["sales_rep"])
    _customer, contact = await _subject(fx_api, rep)
    _other_customer, other = await _subject(fx_api, rep)
    async with _cold_worker(fx_api) as statements:
        read = await fx_api.client.get(f"/api/v1/contacts/{contact['id']}", headers=rep)
        found = await fx_api.client.get("/api/v1/contacts", params={"email": other["email"]}, headers=rep)
    assert read.status_code == 200 and read.json()["email"] == contact["email"]
    assert read.json()["phone"] == SECRETS["phone"]
    assert [(item["id"], item["email"]) for item in found.json()["items"]] == [(other["id"], other["email"])]
    key_reads = [statement for statement in statements if "data_keys" in statement]
    assert len(key_reads) == 2, key_reads
    assert all("FROM contacts" in statement for statement in key_reads), key_reads  # no lookup of its own


async def test_a_browsed_page_reads_its_missing_keys_in_one_query_and_held_ones_not_at_all(fx_api: Any) -> None:
    """A page browsed without a search reads no key beside each row (an index probe per row for keys a worker
    holds): a worker that lacks some loads them in one query of their own, and once it holds them, none."""
    rep = await fx_api.login(["sales_rep"])
    contacts = [(await _subject(fx_api, rep))[1] for _ in range(3)]
    async with _cold_worker(fx_api) as statements:
        first = await fx_api.client.get("/api/v1/contacts", params={"limit": 50}, headers=rep)
        cold = list(statements)
        statements.clear()
        again = await fx_api.client.get("/api/v1/contacts", params={"limit": 50}, headers=rep)
    for page in (first, again):
        assert page.status_code == 200, page.text
        shown = {item["id"]: item["email"] for item in page.json()["items"]}
        assert all(shown[contact["id"]] == contact["email"] for contact in contacts)
    assert not any("FROM contacts" in statement and "data_keys" in statement for statement in cold + statements)
    assert len([statement for statement in cold if "FROM data_keys" in statement]) == 1, cold
    assert not [statement for statement in statements if "data_keys" in statement], statements


async def test_a_worker_without_the_key_still_finds_an_erased_subject_erased(fx_api: Any) -> None:
    manager = await fx_api.login(["sales_manager"])
    customer, contact = await _subject(fx_api, manager)
    erased = await fx_api.client.post(f"/api/v1/customers/{customer['id']}/erase", headers=manager,
                                      json={"legal_basis": "GDPR Art. 17 request 2026-231"})
    assert erased.status_code == 200, erased.text
    async with _cold_worker(fx_api):
        after = (await fx_api.client.get(f"/api/v1/contacts/{contact['id']}", headers=manager)).json()
        listed = (await fx_api.client.get("/api/v1/contacts", params={"customer_id": customer["id"]},
                                          headers=manager)).json()["items"]
    assert after["email"] is None and after["unreadable_fields"]["email"] == "erased"
    assert [item["unreadable_fields"]["email"] for item in listed] == ["erased"]
    assert contact["email"] not in str(after) + str(listed)


async def test_a_key_on_the_erasure_ledger_is_refused_though_its_row_still_reads_active(fx_api: Any) -> None:
    """The erasing process appends to the ledger before it destroys the key rows: in between, the key joined beside
    the record still reads active, and the ledger must win."""
    manager = await fx_api.login(["sales_manager"])
    customer, contact = await _subject(fx_api, manager)
    subject = customer["id"] if fx_api.backend == "postgresql" else customer["id"].replace("-", "")
    async with fx_api.session_factory() as session:
        stored = (await session.execute(text("SELECT id FROM data_keys WHERE subject_id = :subject"),
                                        {"subject": subject})).scalars().all()
    dek_ids = [value if isinstance(value, uuid.UUID) else uuid.UUID(value) for value in stored]
    assert dek_ids
    async with _cold_worker(fx_api) as statements:
        fx_api.app.state.resources.cipher.ledger.append(subject_id=customer["id"], dek_ids=dek_ids, actor="dpo",
                                                        legal_basis="GDPR Art. 17, the ledger written first")
        after = (await fx_api.client.get(f"/api/v1/contacts/{contact['id']}", headers=manager)).json()
    assert any("FROM contacts" in statement and "data_keys" in statement for statement in statements)  # read: active
    assert after["email"] is None and after["unreadable_fields"]["email"] == "erased"
    assert contact["email"] not in str(after)
