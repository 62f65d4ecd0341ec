"""The benchmark's data generators write what Strongroom writes: sealed values that the server's keys open,
blind indexes the server computes alike, and audit events whose chain the server's verifier accepts. Fast, no
database: the smoke test (test_bench_smoke.py) runs them end to end against both servers."""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench import auditgen
from bench.datagen import PROFILES, LoadSpec, Samples, Values, _load_customers, customer_batch
from bench.scenarios import AUDIT_QUERY_SCENARIOS, fill_path
from bench.sealing import RowSealer, TokenPool
from server.audit.canonical import decode_event
from server.audit.chain import GENESIS_HASH, verify_chain
from server.config import load_settings
from server.domain.contacts import CONTACT
from server.security.crypto import DekCache, WrappedDek, open_sealed
from server.security.field_cipher import FieldCipher, ensure_keyring


@pytest.fixture(name="fx_sealer")
def fx_sealer(tmp_path: Path) -> RowSealer:
    settings = load_settings({"STRONGROOM_DATA_DIR": str(tmp_path)})
    ensure_keyring(settings)
    return RowSealer(FieldCipher.from_settings(settings, environ={}))


def test_generated_contacts_are_sealed_so_the_servers_keys_open_them(fx_sealer: RowSealer) -> None:
    samples = Samples()
    batch = customer_batch(Values(3), PROFILES["smoke"], [uuid.uuid4()], 20, samples, sealer=fx_sealer)
    keys = DekCache(fx_sealer.cipher.provider)
    for row in batch.rows["data_keys"]:
        keys.add_wrapped(WrappedDek.from_bytes(row["wrapped"]))
    contact = next(row for row in batch.rows["contacts"] if row["email"] and row["phone"])
    email = open_sealed(contact["email"], keys=keys, table="contacts", column="email", record_id=contact["id"])

    assert contact["phone"].startswith("sr:") and contact["email"].startswith("sr:")
    assert contact["email_bidx"] == fx_sealer.cipher.blind_index(CONTACT, "email", email)
    assert f"{email} {contact['email_bidx']}" in samples.emails
    # One DEK per customer with sealed values, as FieldCipher.create_dek stores it.
    assert len({row["subject_id"] for row in batch.rows["data_keys"]}) == len(batch.rows["data_keys"])
    assert samples.records["contact"] and samples.records["customer"]


def test_plain_batches_stay_in_clear() -> None:
    batch = customer_batch(Values(3), PROFILES["smoke"], [uuid.uuid4()], 5, Samples())
    assert not batch.rows["data_keys"]
    assert all(not (row["email"] or "").startswith("sr:") for row in batch.rows["contacts"])


async def test_the_newest_contacts_a_list_shows_first_are_sealed(fx_sealer: RowSealer, tmp_path: Path) -> None:
    """The list scenario reads the newest page: many contacts share the newest ``created_at`` (capped at now), so
    the page is the highest ids, the last written. It must be sealed as the data set is (the unsealed share, a
    tenth at most, is for the encrypted-vs-plain read), not made of the unsealed share."""

    class Recorder:
        def __init__(self) -> None:
            self.contacts: list[dict[str, object]] = []

        async def write(self, rows: dict[str, list[dict[str, object]]]) -> None:
            self.contacts += rows.get("contacts", [])

    recorder = Recorder()
    # Enough customers that, as in the standard profile, contacts capped at now fill more than the first page.
    profile = dataclasses.replace(PROFILES["smoke"], customers=3_000, id_sample=3_000, opportunities_per_customer=0,
                                  service_records_per_customer=0, activities_per_customer=0)
    spec = LoadSpec(profile, Values(7), fx_sealer, None, tmp_path, 7, None)
    counts: dict[str, int] = dict.fromkeys(("customers", "contacts", "data_keys", "service_records", "activities",
                                            "opportunities"), 0)
    await _load_customers(recorder, spec, [uuid.uuid4()], defaultdict(int, counts))  # type: ignore[arg-type]

    newest_first = sorted(recorder.contacts, key=lambda row: (row["created_at"], row["id"]), reverse=True)
    emails = [str(row["email"]) for row in newest_first[:50] if row["email"]]
    sealed = sum(email.startswith("sr:") for email in emails)
    assert any(not str(row["email"] or "").startswith("sr:") for row in recorder.contacts)  # a plain share exists
    assert sealed >= 0.9 * len(emails), f"{sealed} of the first page's {len(emails)} e-mails sealed"


def _world(count: int, tokens: TokenPool | None = None) -> auditgen.AuditWorld:
    users = [(str(uuid.uuid4()), f"user{n}", ["sales_rep"]) for n in range(6)]
    users.append((str(uuid.uuid4()), "admin", ["sysadmin"]))
    business, admins = auditgen.actors_from_users(users)
    records = {entity: [(uuid.uuid4(), uuid.uuid4()) for _ in range(50)] for entity in auditgen.ENTITIES}
    end = datetime(2026, 11, 23, tzinfo=UTC)
    return auditgen.AuditWorld(business, admins, records, tokens, end - timedelta(days=365), end, 1, count, seed=5)


def test_generated_audit_events_chain_and_decode_like_recorded_ones(fx_sealer: RowSealer) -> None:
    world = _world(3_000, TokenPool(fx_sealer, size=8))
    events = [event for chunk in auditgen.encoded_chunks(world, workers=1) for event in chunk]
    sealed, head = auditgen.chain_chunk(events, GENESIS_HASH)
    rows = [(event.seq, event.canonical, prev, digest) for event, prev, digest in sealed]

    report = verify_chain(rows, expected_first_seq=1, expected_prev_hash=GENESIS_HASH)
    assert report.ok, report.detail
    assert report.last_hash == head
    assert [event.ts for event in events] == sorted(event.ts for event in events)
    for event in events[:500]:
        body = decode_event(event.canonical)
        assert (body["seq"], body["action"], body["entity"], body["entity_id"], body["actor_id"], body["outcome"]) \
            == (event.seq, event.action, event.entity, event.entity_id, event.actor_id, event.outcome)
        assert tuple(body["fields"]) == event.fields
    actions = {event.action for event in events}
    assert {"read", "update", "create", "login", "denied"} <= actions
    assert any(event.subjects for event in events)  # list reads name their customers
    updates = [decode_event(event.canonical) for event in events if event.action == "update"]
    values = [value for body in updates for value in (body["after"] or {}).values() if isinstance(value, str)]
    assert any(value.startswith("sr:") for value in values)  # sensitive values only as ciphertext


def test_query_samples_cover_every_filter(tmp_path: Path) -> None:
    samples = auditgen.QuerySamples(size=50, seed=1)
    world = _world(2_000)
    for chunk in auditgen.encoded_chunks(world, workers=1):
        samples.observe(chunk)
    files = samples.write(tmp_path)
    for name in AUDIT_QUERY_SCENARIOS:
        lines = Path(files[name]).read_text().splitlines()
        assert lines, name
    since, until = Path(files["audit_time"]).read_text().splitlines()[0].split()
    assert since < until


def test_paths_fill_like_the_lua_script() -> None:
    assert fill_path("/a?since={1}&until={2}", "2026-01-01T00:00:00Z 2026-01-02T00:00:00Z") == \
        "/a?since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z"
    assert fill_path("/contacts/{id}", "abc") == "/contacts/abc"
    assert fill_path("/x?email={1}", "a@example.com") == "/x?email=a@example.com"
