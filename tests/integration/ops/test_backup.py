"""Backups end to end, on SQLite and PostgreSQL: create under load, verify, restore, erasures, damage, prune, CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text

from server.app import create_app
from server.audit.models import AuditEventRecord
from server.audit.store import load_or_create_audit_key, verify_trail
from server.config import Settings
from server.db import create_engine, create_session_factory, current_revision, migrate
from server.domain.contacts import CONTACT, Contact
from server.domain.customers.models import Customer
from server.ops.backup import (
    BackupError,
    BackupInvalid,
    BackupRefused,
    RetentionPolicy,
    create_backup,
    prune_backups,
    restore_backup,
    verify_backup,
)
from server.ops.backup.encryption import HEADER_BYTES
from server.ops.backup.keys import load_backup_keys
from server.ops.backup.manifest import AuditHead, Manifest, manifest_path, read_manifest, write_manifest
from server.ops.backup.schedule import run_scheduled_backup
from server.ops.backup.schema import code_head
from server.security.data_keys import DataKeyRow, DekState
from server.security.field_cipher import ERASED, FieldCipher

from .conftest import POSTGRES_ADMIN_URL, NewDatabase, settings_for

# --------------------------------------------------------------------------------------------------- helpers


async def _scalar_rows(url: str, statement: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:
            return list((await session.execute(statement)).scalars().all())
    finally:
        await engine.dispose()


async def _customer_ids(url: str) -> set[str]:
    return {str(value) for value in await _scalar_rows(url, select(Customer.id))}


async def _events(url: str, **where: str) -> list[AuditEventRecord]:
    statement = select(AuditEventRecord).order_by(AuditEventRecord.seq)
    for column, value in where.items():
        statement = statement.where(getattr(AuditEventRecord, column) == value)
    return await _scalar_rows(url, statement)


async def _table_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return {table: int((await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
                    for table in ("customers", "contacts", "audit_events", "data_keys", "users")}
    finally:
        await engine.dispose()


def _copy_pair(backup: Path, directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    shutil.copyfile(backup, target)
    shutil.copyfile(manifest_path(backup), manifest_path(target))
    return target


def _resign(settings: Settings, backup: Path, **changes: Any) -> None:
    """Rewrite the manifest of a (damaged) backup with the backup key, as only a key holder could."""
    keys = load_backup_keys(settings)
    old = read_manifest(manifest_path(backup), keys)
    data = backup.read_bytes()
    values = {field: getattr(old, field) for field in Manifest.__dataclass_fields__}
    values.update(size=len(data), sha256=hashlib.sha256(data).hexdigest(), **changes)
    manifest_path(backup).unlink()
    write_manifest(manifest_path(backup), Manifest(**values), keys)


async def _restored_copy(fx_settings: Settings, fx_new_database: NewDatabase, backup: Path,
                         data_dir: Path) -> Settings:
    target = settings_for(fx_settings, await fx_new_database(), data_dir)
    report = await restore_backup(target, backup)
    assert report.trail_ok, report.trail_detail
    return target


# ---------------------------------------------------------------------------------------- consistency under load


async def test_backup_during_a_write_load_restores_to_a_consistent_point(
    fx_api: Any, fx_settings: Settings, fx_headers: dict[str, str], fx_new_database: NewDatabase, tmp_path: Path,
) -> None:
    created: list[str] = []
    backing_up = asyncio.Event()
    during: list[str] = []
    stop = asyncio.Event()

    async def write_load(worker: int) -> None:
        while not stop.is_set():
            response = await fx_api.client.post("/api/v1/customers", headers=fx_headers, json={
                "name": f"Load {worker} {uuid.uuid4().hex[:8]}", "kind": "company", "tax_id": f"TAX-{worker}"})
            assert response.status_code == 201, response.text
            created.append(response.json()["id"])
            if backing_up.is_set():
                during.append(response.json()["id"])
            # The test client answers without suspending this task; yield, or no other task (the test itself
            # included) would ever run again.
            await asyncio.sleep(0)

    writers = [asyncio.create_task(write_load(worker)) for worker in range(4)]
    while len(created) < 12:
        await asyncio.sleep(0.01)
    committed_before = set(created)
    backing_up.set()
    # The test client serves each request in its own thread and blocks this loop meanwhile, so the backup runs
    # in a thread of its own, with its own loop and engine, as `strongroom backup create` beside a server would.
    backup = await asyncio.to_thread(asyncio.run, create_backup(fx_settings, tmp_path / "backups"))
    backing_up.clear()
    # Keep writing a little after the backup, then stop.
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*writers)
    assert during, "no customer was created while the backup ran: the test proves nothing"
    live = await _customer_ids(fx_settings.resolved_database_url)

    target = settings_for(fx_settings, await fx_new_database(), tmp_path / "restored")
    report = await restore_backup(target, backup.path)
    assert report.trail_ok, report.trail_detail
    restored_url = target.resolved_database_url

    customers = await _customer_ids(restored_url)
    assert committed_before <= customers  # everything committed before the backup began is in it
    assert customers <= live  # nothing that never existed
    create_events = {event.entity_id for event in await _events(restored_url, entity="customer", action="create")}
    # The consistent point: every customer in the restored database has its creation event, and every creation
    # event of a load customer has its customer (a change and its event are in a backup together or not at all).
    assert customers <= create_events
    assert create_events & set(created) == customers & set(created)

    # The restored trail up to the manifest's head is exactly the live trail's prefix.
    head = backup.manifest.audit_head
    assert head is not None
    restored_events = await _events(restored_url)
    live_events = await _events(fx_settings.resolved_database_url)
    assert [(e.seq, bytes(e.hash)) for e in restored_events if e.seq <= head.seq] == \
        [(e.seq, bytes(e.hash)) for e in live_events if e.seq <= head.seq]
    assert bytes(next(e for e in restored_events if e.seq == head.seq).hash).hex() == head.hash

    key = load_or_create_audit_key(fx_settings.resolved_keys_dir, create=False)
    engine = create_engine(restored_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            trail = await verify_trail(session, key.public_key())
    finally:
        await engine.dispose()
    assert trail.ok, trail.detail
    restore_events = await _events(restored_url, action="restore")
    assert [event.entity_id for event in restore_events] == [backup.manifest.file_id]
    await fx_api.seal()
    backup_events = await _events(fx_settings.resolved_database_url, entity="backup",
                                  entity_id=backup.manifest.file_id)
    assert [(event.action, event.outcome) for event in backup_events] == [("backup", "ok")]


async def test_a_good_backup_verifies_and_the_verification_is_audited(
    fx_api: Any, fx_settings: Settings, fx_headers: dict[str, str], tmp_path: Path,
) -> None:
    marker = f"Clear Name {secrets.token_hex(6)}"
    created = await fx_api.client.post("/api/v1/customers", headers=fx_headers, json={"name": marker,
                                                                                      "kind": "company"})
    assert created.status_code == 201, created.text
    backup = await create_backup(fx_settings, tmp_path / "backups")
    manifest = backup.manifest
    assert manifest.database == ("sqlite" if fx_settings.is_sqlite else "postgresql")
    assert manifest.schema_revision == code_head()
    assert manifest.key_id == load_backup_keys(fx_settings).key_id
    assert oct(backup.path.stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "backups").stat().st_mode & 0o077 == 0
    # Nothing in clear: the customer name just written (a plain column in the database) is not in the file.
    assert marker.encode() not in backup.path.read_bytes()
    assert manifest.audit_head is not None

    report = await verify_backup(fx_settings, backup.path)
    assert report.events_verified >= manifest.audit_head.seq
    await fx_api.seal()
    events = await _events(fx_settings.resolved_database_url, entity="backup", entity_id=manifest.file_id)
    assert [event.action for event in events] == ["backup", "backup"]  # created, then verified
    if not fx_settings.is_sqlite:  # the scratch database is gone
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            left = await connection.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'strongroom_verify_%'")
        finally:
            await connection.close()
        assert left == []


# ---------------------------------------------------------------------------------------------------- damage


async def test_a_corrupted_byte_is_detected_and_restore_changes_nothing(
    fx_settings: Settings, fx_new_database: NewDatabase, tmp_path: Path,
) -> None:
    good = await create_backup(fx_settings, tmp_path / "backups")
    bad = _copy_pair(good.path, tmp_path / "bad", "strongroom-bad.srbk")
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x04
    bad.write_bytes(bytes(data))
    with pytest.raises(BackupInvalid, match="SHA-256"):
        await verify_backup(fx_settings, bad, record=False)

    target = await _restored_copy(fx_settings, fx_new_database, good.path, tmp_path / "restored")
    before = await _table_counts(target.resolved_database_url)
    with pytest.raises(BackupInvalid, match="SHA-256"):
        await restore_backup(target, bad)
    assert await _table_counts(target.resolved_database_url) == before

    # With a manifest re-signed over the damaged file (only a backup-key holder could), the chunk's
    # authentication still catches it, and the half-done restore is rolled back.
    _resign(fx_settings, bad)
    with pytest.raises(BackupInvalid, match="does not authenticate"):
        await verify_backup(fx_settings, bad, record=False)
    with pytest.raises(BackupInvalid, match="does not authenticate"):
        await restore_backup(target, bad)
    after = await _table_counts(target.resolved_database_url)
    assert {table: count for table, count in after.items() if table != "audit_events"} == \
        {table: count for table, count in before.items() if table != "audit_events"}
    assert after["audit_events"] <= before["audit_events"] + 2  # at most the refusals' own events, once sealed


async def test_a_truncated_file_is_detected(fx_settings: Settings, tmp_path: Path) -> None:
    good = await create_backup(fx_settings, tmp_path / "backups")
    for keep in (HEADER_BYTES + 10, good.manifest.size // 2, good.manifest.size - 1):
        cut = _copy_pair(good.path, tmp_path / f"cut-{keep}", "strongroom-cut.srbk")
        with cut.open("r+b") as handle:
            handle.truncate(keep)
        with pytest.raises(BackupInvalid, match="truncated"):
            await verify_backup(fx_settings, cut, record=False)
        _resign(fx_settings, cut)  # even with a matching manifest
        with pytest.raises(BackupInvalid, match=r"truncated|does not authenticate"):
            await verify_backup(fx_settings, cut, record=False)


async def test_an_edited_manifest_is_detected(fx_settings: Settings, fx_new_database: NewDatabase,
                                              tmp_path: Path) -> None:
    good = await create_backup(fx_settings, tmp_path / "backups")
    for field, value in (("schema_revision", "0123456789ab"), ("created_at", "2020-01-01T00:00:00Z"),
                         ("audit_head", {"seq": 1, "hash": "00" * 32})):
        edited = _copy_pair(good.path, tmp_path / field, "strongroom-edited.srbk")
        document = json.loads(manifest_path(edited).read_text())
        document[field] = value
        manifest_path(edited).write_text(json.dumps(document))
        with pytest.raises(BackupInvalid, match="MAC mismatch"):
            await verify_backup(fx_settings, edited, record=False)
    target = settings_for(fx_settings, await fx_new_database(), tmp_path / "restored")
    with pytest.raises(BackupInvalid, match="MAC mismatch"):
        await restore_backup(target, edited)
    assert await asyncio.to_thread(current_revision, target.resolved_database_url) is None


async def test_the_backup_must_match_its_manifest_beyond_the_mac(fx_settings: Settings, tmp_path: Path) -> None:
    good = await create_backup(fx_settings, tmp_path / "backups")
    head = good.manifest.audit_head
    assert head is not None
    lying = _copy_pair(good.path, tmp_path / "lying", "strongroom-lying.srbk")
    _resign(fx_settings, lying, audit_head=AuditHead(seq=head.seq + 5, hash="00" * 32))
    with pytest.raises(BackupInvalid, match="audit head"):
        await verify_backup(fx_settings, lying, record=False)


async def test_a_backup_of_a_newer_schema_is_refused(fx_settings: Settings, fx_new_database: NewDatabase,
                                                     tmp_path: Path) -> None:
    source_url = await fx_new_database()
    await asyncio.to_thread(migrate, source_url)
    engine = create_engine(source_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = 'ffff0000ffff'"))
    finally:
        await engine.dispose()
    newer = await create_backup(settings_for(fx_settings, source_url, tmp_path / "source"), tmp_path / "backups")
    assert newer.manifest.schema_revision == "ffff0000ffff"

    target = settings_for(fx_settings, await fx_new_database(), tmp_path / "target")
    await asyncio.to_thread(migrate, target.resolved_database_url)
    before = await _table_counts(target.resolved_database_url)
    with pytest.raises(BackupRefused, match="newer than this Strongroom"):
        await restore_backup(target, newer.path)
    assert await asyncio.to_thread(current_revision, target.resolved_database_url) == code_head()
    after = await _table_counts(target.resolved_database_url)
    assert {k: v for k, v in after.items() if k != "audit_events"} == \
        {k: v for k, v in before.items() if k != "audit_events"}
    with pytest.raises(BackupRefused, match="newer than this Strongroom"):
        await verify_backup(target, newer.path, record=False)


# --------------------------------------------------------------------------------------------------- erasure


async def test_restore_of_an_older_backup_after_an_erasure_leaves_the_subject_erased(
    fx_api: Any, fx_settings: Settings, fx_new_database: NewDatabase, tmp_path: Path,
) -> None:
    manager = await fx_api.login(["sales_manager"])
    email = f"wang.fang.{secrets.token_hex(3)}@example.com"

    async def subject(name: str, mail: str) -> tuple[dict[str, Any], dict[str, Any]]:
        customer = (await fx_api.client.post("/api/v1/customers", headers=manager, json={
            "name": name, "kind": "individual", "tax_id": f"TAX-{secrets.token_hex(4)}"})).json()
        contact = await fx_api.client.post("/api/v1/contacts", headers=manager, json={
            "customer_id": customer["id"], "name": name, "email": mail, "phone": "+86 138 0013 8123"})
        assert contact.status_code == 201, contact.text
        return customer, dict(contact.json())

    erased_customer, erased_contact = await subject("Wang Fang", email)
    kept_customer, kept_contact = await subject("Li Na", f"li.na.{secrets.token_hex(3)}@example.com")
    older = await create_backup(fx_settings, tmp_path / "backups")

    response = await fx_api.client.post(f"/api/v1/customers/{erased_customer['id']}/erase", headers=manager,
                                        json={"legal_basis": "GDPR Art. 17 request 2026-200"})
    assert response.status_code == 200, response.text

    target = settings_for(fx_settings, await fx_new_database(), tmp_path / "restored")
    report = await restore_backup(target, older.path)
    assert report.keys_destroyed_again >= 1 and report.customers_erased_again >= 1
    assert report.trail_ok, report.trail_detail

    url = target.resolved_database_url
    cipher = FieldCipher.from_settings(target, environ={})
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:
            erased_id, kept_id = uuid.UUID(erased_customer["id"]), uuid.UUID(kept_customer["id"])
            names = dict((await session.execute(select(Customer.id, Customer.name)
                                                .where(Customer.id.in_([erased_id, kept_id])))).all())
            contacts = list((await session.execute(select(Contact).where(
                Contact.id.in_([uuid.UUID(erased_contact["id"]), uuid.UUID(kept_contact["id"])])))).scalars())
            await cipher.prepare(session, contacts, CONTACT)
            states = set((await session.execute(select(DataKeyRow.state, DataKeyRow.wrapped)
                                                .where(DataKeyRow.subject_id == erased_id))).all())
    finally:
        await engine.dispose()
    assert names == {erased_id: "[erased]", kept_id: "Li Na"}
    opened = {str(contact.id): (contact.name, cipher.open_field(CONTACT, contact, "email"), contact.email_bidx)
              for contact in contacts}
    assert opened[erased_contact["id"]] == ("[erased]", ERASED, None)
    assert opened[kept_contact["id"]][1] == kept_contact["email"]
    assert states == {(DekState.DESTROYED, None)}
    erase_events = [event for event in await _events(url, action="erase") if event.entity_id == erased_customer["id"]]
    assert erase_events and b"re-applied after restoring backup" in bytes(erase_events[-1].canonical)

    # Restoring the same backup again re-applies the erasure again: still erased.
    again = await restore_backup(target, older.path)
    assert again.customers_erased_again >= 1
    assert (await _scalar_rows(url, select(Customer.name).where(Customer.id == erased_id))) == ["[erased]"]


def _with_ledger_apart(settings: Settings, tmp_path: Path) -> tuple[Settings, Path]:
    """``settings`` with the erasure ledger in a private directory of its own, and that ledger's path."""
    ledger_path = tmp_path / "ledger" / "erasure-ledger.jsonl"
    ledger_path.parent.mkdir(mode=0o700)
    return dataclasses.replace(settings, erasure_ledger_path=str(ledger_path)), ledger_path


async def test_erasure_appends_to_the_ledger_where_the_setting_points(
    fx_api: Any, fx_settings: Settings, tmp_path: Path,
) -> None:
    """Deployments keep the keys read-only and the ledger elsewhere (STRONGROOM_ERASURE_LEDGER_PATH)."""
    settings, ledger_path = _with_ledger_apart(fx_settings, tmp_path)
    default_ledger = fx_settings.resolved_keys_dir / "erasure-ledger.jsonl"
    default_before = default_ledger.read_bytes() if default_ledger.exists() else b""
    manager = await fx_api.login(["sales_manager"])
    async with AsyncTestClient(app=create_app(settings), raise_server_exceptions=False) as client:
        customer = (await client.post("/api/v1/customers", headers=manager, json={
            "name": "Zhao Lei", "kind": "individual", "tax_id": f"TAX-{secrets.token_hex(4)}"})).json()
        response = await client.post(f"/api/v1/customers/{customer['id']}/erase", headers=manager,
                                     json={"legal_basis": "GDPR Art. 17 request 2026-311"})
        assert response.status_code == 200, response.text
    records = FieldCipher.from_settings(settings, environ={}).ledger.read_all()
    assert [record.subject_id for record in records] == [customer["id"]]
    assert customer["id"] in ledger_path.read_text()
    assert (default_ledger.read_bytes() if default_ledger.exists() else b"") == default_before


async def test_an_erasure_the_ledger_cannot_record_is_refused_and_undone(
    fx_api: Any, fx_settings: Settings, tmp_path: Path,
) -> None:
    """A ledger damaged (or unwritable) after the server started: 503 with the problem type, the key is kept."""
    settings, ledger_path = _with_ledger_apart(fx_settings, tmp_path)
    manager = await fx_api.login(["sales_manager"])
    async with AsyncTestClient(app=create_app(settings), raise_server_exceptions=False) as client:
        customer = (await client.post("/api/v1/customers", headers=manager, json={
            "name": "Qian Hui", "kind": "individual", "tax_id": f"TAX-{secrets.token_hex(4)}"})).json()
        for damage in ("garbage", "directory"):
            if damage == "garbage":
                ledger_path.write_text("not a ledger line\n")
            else:
                ledger_path.unlink()
                ledger_path.mkdir()
            response = await client.post(f"/api/v1/customers/{customer['id']}/erase", headers=manager,
                                         json={"legal_basis": "GDPR Art. 17 request 2026-312"})
            assert response.status_code == 503, response.text
            problem = response.json()
            assert problem["type"].endswith("/erasure-ledger-unavailable")
            assert "nothing was erased" in problem["detail"] and str(tmp_path) not in response.text
            kept = (await client.get(f"/api/v1/customers/{customer['id']}", headers=manager)).json()
            assert kept["name"] == "Qian Hui" and kept["tax_id"].startswith("TAX-")


# ----------------------------------------------------------------------------------------------------- prune


async def test_prune_keeps_the_policy_and_leaves_what_it_cannot_authenticate(
    fx_api: Any, fx_settings: Settings, tmp_path: Path,
) -> None:
    keys = load_backup_keys(fx_settings)
    directory = tmp_path / "backups"
    directory.mkdir()
    newest = datetime(2026, 3, 18, 2, 30, tzinfo=UTC)  # a Wednesday

    def fake_backup(moment: datetime, tag: str = "") -> Path:
        path = directory / f"strongroom-{moment:%Y%m%dT%H%M%SZ}-{tag or 'aa00'}.srbk"
        path.write_bytes(os.urandom(64))
        write_manifest(manifest_path(path), Manifest(
            file=path.name, file_id=secrets.token_hex(16), size=64, sha256="00" * 32, plaintext_bytes=0,
            database="sqlite", schema_revision=code_head(), created_at=moment, strongroom_version="0.1.0",
            audit_head=None, pending_audit_events=0, key_id=keys.key_id), keys)
        return path

    nightly = {moment: fake_backup(moment) for moment in (newest - timedelta(days=day) for day in range(40))}
    tampered = fake_backup(newest - timedelta(days=20, hours=1), "bb11")
    document = json.loads(manifest_path(tampered).read_text())
    document["created_at"] = "2026-03-18T23:59:59Z"  # tries to pass for the newest
    manifest_path(tampered).write_text(json.dumps(document))
    stranger = directory / "notes.txt"
    stranger.write_text("keep me")
    stale, fresh = directory / "x.srbk.partial", directory / "y.srbk.partial"
    stale.write_bytes(b"old")
    fresh.write_bytes(b"in progress")
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))

    policy = RetentionPolicy(daily=3, weekly=2, monthly=2)
    listing = sorted(path.name for path in directory.iterdir())
    dry = await prune_backups(fx_settings, directory, policy=policy, dry_run=True)
    assert sorted(path.name for path in directory.iterdir()) == listing
    assert len(dry.deleted) == 40 - 5

    result = await prune_backups(fx_settings, directory, policy=policy)
    # Daily: Mar 18, 17, 16; weekly: Mar 18 (ISO week 12) and Sun Mar 15 (week 11); monthly: Mar 18 and Feb 28.
    expected = {datetime(2026, 3, day, 2, 30, tzinfo=UTC) for day in (18, 17, 16, 15)} | {
        datetime(2026, 2, 28, 2, 30, tzinfo=UTC)}
    assert {entry.created_at for entry in result.kept} == expected
    remaining = {path.name for path in directory.iterdir()}
    for moment, path in nightly.items():
        assert (path.name in remaining) == (moment in expected), moment
        assert (manifest_path(path).name in remaining) == (moment in expected), moment
    assert {tampered.name, manifest_path(tampered).name, stranger.name, fresh.name} <= remaining
    assert stale.name not in remaining
    assert [path for path, _why in result.skipped] == [tampered]
    await fx_api.seal()
    pruned = [event for event in await _events(fx_settings.resolved_database_url, entity="backup")
              if b"backups pruned" in bytes(event.canonical)]
    assert pruned


async def test_the_embedded_schedule_creates_then_prunes(fx_settings: Settings, tmp_path: Path) -> None:
    settings = settings_for(fx_settings, fx_settings.resolved_database_url, tmp_path / "scheduled",
                            backup_keep_daily=1, backup_keep_weekly=0, backup_keep_monthly=0)
    await run_scheduled_backup(settings)
    await run_scheduled_backup(settings)
    files = sorted(settings.resolved_backup_dir.glob("*.srbk"))
    assert len(files) == 1  # the second run's prune kept only the newest of the day
    await verify_backup(settings, files[0], record=False)


async def test_the_server_runs_its_backup_schedule(fx_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """`strongroom serve` runs the schedule loop for its lifetime, with its own settings, and stops it on exit."""
    from litestar.testing import AsyncTestClient

    import server.app
    from server.app import create_app

    started: list[str] = []
    cancelled = asyncio.Event()

    async def schedule(settings: Settings) -> None:
        started.append(settings.backup_schedule)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    monkeypatch.setattr(server.app, "run_backup_schedule", schedule)
    settings = dataclasses.replace(fx_settings, backup_schedule="daily 02:30")
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert (await client.get("/health/live")).status_code == 200
        assert started == ["daily 02:30"]
    assert cancelled.is_set()


# ------------------------------------------------------------------------------------------ PostgreSQL only


async def test_verify_without_createdb_names_the_privilege(fx_settings: Settings, tmp_path: Path) -> None:
    if fx_settings.is_sqlite:
        pytest.skip("PostgreSQL scratch databases only")
    backup = await create_backup(fx_settings, tmp_path / "backups")
    role = f"strongroom_nocreatedb_{secrets.token_hex(3)}"
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(f"CREATE ROLE {role} LOGIN NOCREATEDB")
        url = fx_settings.resolved_database_url.replace("postgres@", f"{role}@", 1)
        limited = settings_for(fx_settings, url, tmp_path / "limited")
        with pytest.raises(BackupError, match="CREATEDB"):
            await verify_backup(limited, backup.path, record=False)
    finally:
        await connection.execute(f"DROP ROLE IF EXISTS {role}")
        await connection.close()


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_exit_codes(fx_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli import main

    for name, value in (("STRONGROOM_DATA_DIR", fx_settings.data_dir),
                        ("STRONGROOM_DATABASE_URL", fx_settings.resolved_database_url),
                        ("STRONGROOM_KEYS_DIR", str(fx_settings.resolved_keys_dir)),
                        ("STRONGROOM_LOG_LEVEL", "WARNING")):
        monkeypatch.setenv(name, value)
    out = tmp_path / "cli-backups"
    assert main(["backup", "create", "--out", str(out)]) == 0
    (backup,) = out.glob("*.srbk")
    captured = capsys.readouterr()
    assert str(backup) in captured.out
    assert "backup: encrypting" in captured.err or "backup: pg_dump" in captured.err  # progress on stderr
    for secret in ("postgres@", "PGPASSWORD", load_backup_keys(fx_settings).manifest_key.hex()):
        assert secret not in captured.out + captured.err

    assert main(["backup", "verify", str(backup), "--quiet"]) == 0
    assert "backup OK" in capsys.readouterr().out
    bad = _copy_pair(backup, tmp_path / "bad", "strongroom-bad.srbk")
    bad.write_bytes(bad.read_bytes()[:-1])
    assert main(["backup", "verify", str(bad), "--quiet"]) == 1
    assert "BACKUP BAD" in capsys.readouterr().err
    assert main(["backup", "verify", str(tmp_path / "missing.srbk"), "--quiet"]) == 2
    assert main(["backup", "restore", str(backup)]) == 2
    assert "--yes" in capsys.readouterr().err
    assert main(["backup", "prune", "--dir", str(out), "--dry-run"]) == 0
    assert "1 kept, 0 would delete" in capsys.readouterr().out
