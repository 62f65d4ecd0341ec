"""Retention: legal holds, archiving expired events to verifiable files, and the trail after it, on both databases.

Archiving deletes events, so these tests run on a database of their own (one per backend), not the session's.
Expiry is simulated by archiving "as of" a moment far in the future.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from server.audit import retention, store, trail
from server.audit.canonical import decode_event
from server.audit.merkle import leaf_hash, root_hash, verify_inclusion
from server.audit.models import AuditArchive, AuditCheckpoint, AuditCompactRange, AuditEventRecord
from server.audit.sealer import seal_pending
from server.audit.tags import AuditAction
from server.config import Settings, load_settings
from server.db import create_engine, create_session_factory, migrate, write_transaction
from server.domain.base import utc_now
from server.ops.audit_archive import run_scheduled_archive
from server.security.principal import system_principal
from server.services.records import actor_of
from tests.conftest import BACKENDS, POSTGRES_ADMIN_URL, Api, serving, settings_with_keys

FUTURE = timedelta(days=3650)
EVENT_TABLES = ("audit_events", "audit_event_fields", "audit_event_subjects")
GUARDED = (*EVENT_TABLES, "audit_checkpoints", "audit_archives", "audit_compact_ranges")


def _admin_sql(statement: str) -> None:
    subprocess.run(["psql", POSTGRES_ADMIN_URL, "-q", "-c", statement], check=True, capture_output=True)


@pytest.fixture(scope="module", params=BACKENDS, name="fx_archive_settings")
def fx_archive_settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a fresh database of each backend, used only by this module."""
    data_dir = tmp_path_factory.mktemp("retention")
    name = f"strongroom_retention_{os.getpid()}_{secrets.token_hex(4)}"
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'strongroom.db'}"
    else:
        _admin_sql(f'CREATE DATABASE "{name}"')
        url = f"postgresql+asyncpg://{POSTGRES_ADMIN_URL.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    try:
        migrate(url)
        yield settings_with_keys(data_dir, url)
    finally:
        if request.param != "sqlite":
            _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", name="fx_archive_api")
async def fx_archive_api(fx_archive_settings: Settings) -> AsyncIterator[Api]:
    """The application on this module's database."""
    async with serving(fx_archive_settings) as api:
        yield api


@pytest.fixture(scope="module", name="fx_auditor")
async def fx_auditor(fx_archive_api: Api) -> dict[str, str]:
    return await fx_archive_api.login(["auditor"])


@pytest.fixture(scope="module", name="fx_rep")
async def fx_rep(fx_archive_api: Api) -> dict[str, str]:
    return await fx_archive_api.login(["sales_rep"])


def _settings(api: Api) -> Settings:
    return api.app.state.resources.settings  # type: ignore[no-any-return]


def _key(api: Api) -> Any:
    return store.load_or_create_audit_key(Path(_settings(api).resolved_keys_dir), create=False)


def _cli_env(api: Api) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("STRONGROOM_")}
    settings = _settings(api)
    env.update(STRONGROOM_DATA_DIR=settings.data_dir, STRONGROOM_DATABASE_URL=settings.resolved_database_url,
               STRONGROOM_LOG_LEVEL="WARNING")
    return env


def _cli(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], env=_cli_env(api), capture_output=True,
                          text=True, check=False, timeout=120)


async def _customer(api: Api, headers: dict[str, str], name: str) -> str:
    response = await api.client.post("/api/v1/customers", headers=headers, json={"name": name, "kind": "company"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _archive(api: Api, *, max_events: int = 1_000_000) -> list[Any]:
    settings = _settings(api)
    async with api.session_factory() as session:
        return [outcome async for outcome in retention.archive_expired(
            session, signing_key=_key(api), directory=retention.archive_dir(settings.data_dir, ""),
            retention_days=settings.audit_retention_days, actor=actor_of(system_principal("tests")),
            max_events=max_events, sink=settings.resolved_checkpoint_sink, now=utc_now() + FUTURE)]


async def _verify(api: Api) -> store.TrailReport:
    async with api.session_factory() as session:
        await seal_pending(session)
        async with session.begin():
            return await store.verify_trail(session, _key(api).public_key(),
                                            sink=_settings(api).resolved_checkpoint_sink)


async def _boundary(api: Api) -> int:
    async with api.session_factory() as session, session.begin():
        return (await store.archive_boundary(session)).last_seq


async def _ensure_archived(api: Api, headers: dict[str, str]) -> int:
    """Archive whatever is archivable (so a test also runs alone); the boundary after it."""
    for index in range(3):
        await _customer(api, headers, f"Archivable {index}")
    await _archive(api)
    boundary = await _boundary(api)
    assert boundary > 0
    return boundary


async def _first_event_about(api: Api, customer_id: str) -> int:
    await api.seal()
    async with api.session_factory() as session:
        return int((await session.execute(select(func.min(AuditEventRecord.seq)).where(
            (AuditEventRecord.subject_id == customer_id) | (AuditEventRecord.entity_id == customer_id)))
        ).scalar_one())


async def _place_hold(api: Api, auditor: dict[str, str], **hold: Any) -> dict[str, Any]:
    response = await api.client.post("/api/v1/audit/holds", headers=auditor, json={"reason": "case 2026-17", **hold})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _verify_file(api: Api, path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    key_file = tmp_path / "audit.pem"
    key_file.write_text(_cli(api, "audit", "public-key").stdout)
    env = {key: value for key, value in os.environ.items() if not key.startswith("STRONGROOM_")}
    # Offline: no settings, no database, no keys directory; only the file and the public key.
    return subprocess.run([sys.executable, "-m", "server.cli", "audit", "verify", "--file", str(path),
                           "--public-key", str(key_file)], env=env, capture_output=True, text=True, check=False)


async def test_checkpoints_are_incremental_and_match_a_full_recomputation(fx_archive_api: Api,
                                                                          fx_rep: dict[str, str]) -> None:
    api = fx_archive_api
    for index in range(3):
        await _customer(api, fx_rep, f"Early {index}")
    await api.seal()
    key = _key(api)
    async with api.session_factory() as session:
        async with write_transaction(session):
            first = await store.make_checkpoint(session, key)
        await _customer(api, fx_rep, "Between checkpoints")
        await seal_pending(session)
        async with write_transaction(session):
            second = await store.make_checkpoint(session, key)
        async with session.begin():
            canonicals = (await session.execute(select(AuditEventRecord.canonical).order_by(AuditEventRecord.seq))
                          ).scalars().all()
            states = (await session.execute(select(AuditCompactRange.tree_size))).scalars().all()
    assert first is not None and second is not None
    assert second.checkpoint.tree_size > first.checkpoint.tree_size
    assert {first.checkpoint.tree_size, second.checkpoint.tree_size} <= set(states)
    leaves = [leaf_hash(bytes(body)) for body in canonicals]
    assert second.checkpoint.root_hash == root_hash(leaves[: second.checkpoint.tree_size])
    assert first.checkpoint.root_hash == root_hash(leaves[: first.checkpoint.tree_size])
    assert (await _verify(api)).ok


async def test_archive_stops_at_a_held_event_and_the_retained_trail_still_proves(
        fx_archive_api: Api, fx_auditor: dict[str, str], fx_rep: dict[str, str], tmp_path: Path) -> None:
    api = fx_archive_api
    for index in range(4):
        await _customer(api, fx_rep, f"Old {index}")
    held = await _customer(api, fx_rep, "Under litigation")
    await api.client.patch(f"/api/v1/customers/{held}", headers=fx_rep, json={"tier": "A", "version": 1})
    for index in range(3):
        await _customer(api, fx_rep, f"Later {index}")
    hold = await _place_hold(api, fx_auditor, customer_id=held)
    first_held = await _first_event_about(api, held)

    outcomes = await _archive(api)
    archive, stop = outcomes[0], outcomes[-1]
    assert isinstance(archive, retention.ArchiveResult) and isinstance(stop, retention.ArchivePlan)
    assert (archive.details["first_seq"], archive.details["last_seq"]) == (1, first_held - 1)
    assert (stop.stopped_by, stop.hold_id, stop.first_seq) == ("hold", hold["id"], first_held)
    async with api.session_factory() as session:
        remaining = (await session.execute(select(func.min(AuditEventRecord.seq)))).scalar_one()
        stored = (await session.execute(select(AuditArchive))).scalar_one()
    assert remaining == first_held
    assert stored.file_sha256 == hashlib.sha256(archive.path.read_bytes()).hexdigest()

    # The retained trail verifies, from the archive boundary, by the API too; the archiving is in it.
    report = await _verify(api)
    assert report.ok, report.detail
    assert f"events 1..{first_held - 1} are archived" in report.detail
    assert (await api.client.get("/api/v1/audit/verify", headers=fx_auditor)).json()["ok"]
    archived = (await api.client.get("/api/v1/audit/events", params={"action": "archive"}, headers=fx_auditor)
                ).json()["items"]
    assert archived and archived[0]["after"]["sha256"] == stored.file_sha256
    assert archived[0]["after"]["last_seq"] == first_held - 1

    # The archive file verifies offline; an edited copy does not.
    verified = _verify_file(api, archive.path, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    lines = archive.path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = json.loads(lines[0])
    assert (header["complete"], header["seq_range"]) == (True, [1, first_held - 1])
    edited_path = tmp_path / "edited.jsonl"
    event_line = next(i for i, line in enumerate(lines) if '"type":"event"' in line)
    record = json.loads(lines[event_line])
    body = base64.b64decode(record["canonical"])
    record["canonical"] = base64.b64encode(body.replace(b'"outcome":"ok"', b'"outcome":"no"')).decode()
    assert base64.b64decode(record["canonical"]) != body
    lines[event_line] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    edited_path.write_text("".join(lines), encoding="utf-8")
    edited = _verify_file(api, edited_path, tmp_path)
    assert edited.returncode == 1 and edited.stdout.startswith("BROKEN"), edited.stdout

    # A checkpoint made after archiving proves a retained event, from the stored compact range.
    created = await api.client.post("/api/v1/audit/checkpoints", headers=fx_auditor)
    assert created.status_code == 200 and created.json()["created"], created.text
    async with api.session_factory() as session, write_transaction(session):
        plan = await store.prepare_export(session, store.EventQuery(subject_id=held), _key(api))
        newest = (await session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc())
                                        .limit(1))).scalar_one()
        canonical = (await session.execute(select(AuditEventRecord.canonical)
                                           .where(AuditEventRecord.seq == first_held))).scalar_one()
    assert newest.tree_size > first_held and newest.created_at > stored.created_at
    proof = plan.tree.inclusion_proof(first_held - 1, newest.tree_size)
    assert verify_inclusion(leaf_hash(bytes(canonical)), first_held - 1, newest.tree_size, proof,
                            bytes(newest.root_hash))
    # ... and so does an export of the held customer, offline.
    exported = await api.client.get("/api/v1/audit/export", params={"customer_id": held}, headers=fx_auditor)
    assert exported.status_code == 200, exported.text
    export_path = tmp_path / "held.jsonl"
    export_path.write_bytes(exported.content)
    assert _verify_file(api, export_path, tmp_path).returncode == 0
    sizes = [int(json.loads(line)["body"].split("\n")[1]) for line in exported.text.splitlines()
             if json.loads(line)["type"] == "checkpoint"]
    assert min(sizes) >= first_held - 1 and max(sizes) > first_held

    # Released, the hold no longer stops the next archive, whose file continues the first one's history.
    released = await api.client.post(f"/api/v1/audit/holds/{hold['id']}/release", headers=fx_auditor,
                                     json={"reason": "case closed"})
    assert released.status_code == 200 and not released.json()["active"], released.text
    second = (await _archive(api))[0]
    assert isinstance(second, retention.ArchiveResult)
    assert second.details["first_seq"] == first_held
    second_lines = second.path.read_text(encoding="utf-8").splitlines()
    first_checkpoint = json.loads(second_lines[1])["body"]
    assert first_checkpoint.split("\n")[1] == str(first_held - 1)  # the previous archive's checkpoint
    assert _verify_file(api, second.path, tmp_path).returncode == 0
    report = await _verify(api)
    assert report.ok, report.detail
    downloaded = await api.client.get(f"/api/v1/audit/archives/{second.details['archive']}/file",
                                      headers=fx_auditor)
    assert downloaded.status_code == 200
    assert downloaded.content == second.path.read_bytes()
    digest = base64.b64encode(hashlib.sha256(downloaded.content).digest()).decode()
    assert downloaded.headers["repr-digest"] == f"sha-256=:{digest}:"
    listed = (await api.client.get("/api/v1/audit/archives", headers=fx_auditor)).json()
    assert [item["archive"] for item in listed] == [1, 2]


async def test_a_time_range_hold_keeps_events_of_that_period(fx_archive_api: Api, fx_auditor: dict[str, str],
                                                             fx_rep: dict[str, str]) -> None:
    api = fx_archive_api
    await _customer(api, fx_rep, "Before the period")
    await api.seal()
    await asyncio.sleep(0.01)
    since = utc_now()
    period = await _customer(api, fx_rep, "In the period")
    await api.seal()
    until = utc_now() + timedelta(milliseconds=1)
    await _customer(api, fx_rep, "After the period")
    hold = await _place_hold(api, fx_auditor, since=since.isoformat(), until=until.isoformat())
    first_in_period = await _first_event_about(api, period)
    outcomes = await _archive(api)
    assert outcomes[-1].stopped_by == "hold" and outcomes[-1].hold_id == hold["id"]
    assert await _boundary(api) == first_in_period - 1
    await api.client.post(f"/api/v1/audit/holds/{hold['id']}/release", headers=fx_auditor,
                          json={"reason": "period no longer relevant"})


async def test_the_database_guards_deletes_and_archive_records(fx_archive_api: Api, fx_auditor: dict[str, str],
                                                               fx_rep: dict[str, str]) -> None:
    api = fx_archive_api
    boundary = await _ensure_archived(api, fx_rep)
    held = await _customer(api, fx_rep, "Held for the guard")
    hold = await _place_hold(api, fx_auditor, customer_id=held)
    await api.seal()
    async with api.session_factory() as session:
        head, head_hash = (await session.execute(select(AuditEventRecord.seq, AuditEventRecord.hash)
                                                 .order_by(AuditEventRecord.seq.desc()).limit(1))).one()
    # Even the schema owner cannot delete an event that is not archived, nor change an archived record.
    for statement in (f"DELETE FROM audit_events WHERE seq = {boundary + 1}", "DELETE FROM audit_event_fields",
                      "DELETE FROM audit_events", f"UPDATE audit_events SET outcome = 'ok' WHERE seq = {head}",
                      "DELETE FROM audit_archives", "UPDATE audit_archives SET last_seq = last_seq + 1",
                      "DELETE FROM audit_legal_holds", "DELETE FROM audit_compact_ranges"):
        async with api.session_factory() as session:
            with pytest.raises(DBAPIError, match="append-only"):
                async with session.begin():
                    await session.execute(text(statement))
    # An archive record must continue the last one, name its last event's real hash, and cover no held event.
    insert = ("INSERT INTO audit_archives (id, first_seq, last_seq, last_hash, compact_range, events, cutoff, "
              "file_name, file_sha256, file_bytes, created_at, created_by) VALUES (:id, :first, :last, :hash, :cr, "
              "1, :now, 'forged.jsonl', '00', 1, :now, 'intruder')")
    async with api.session_factory() as session:
        held_seq, held_hash = (await session.execute(
            select(AuditEventRecord.seq, AuditEventRecord.hash).where(AuditEventRecord.entity_id == held)
            .order_by(AuditEventRecord.seq).limit(1))).one()
    for first, last, digest in ((boundary + 2, head, head_hash), (boundary + 1, head, b"\x00" * 32),
                                (boundary + 1, held_seq, held_hash)):
        async with api.session_factory() as session:
            with pytest.raises(DBAPIError, match="audit_archives"):
                async with session.begin():
                    await session.execute(text(insert), {"id": 99, "first": first, "last": last,
                                                         "hash": bytes(digest), "cr": b"", "now": utc_now()})
    if api.backend == "postgresql":
        # The runtime role cannot write an archive record nor delete events at all (grants, not only triggers).
        for statement in (f"DELETE FROM audit_events WHERE seq <= {boundary}",
                          insert.replace(":id", "98").replace(":first", str(boundary + 1))):
            async with api.session_factory() as session, session.begin():
                await session.execute(text("SET LOCAL ROLE strongroom_app"))
                with pytest.raises(DBAPIError, match="permission denied"):
                    await session.execute(text(statement), {"last": head, "hash": bytes(head_hash), "cr": b"",
                                                            "now": utc_now()})
                await session.rollback()
    await api.client.post(f"/api/v1/audit/holds/{hold['id']}/release", headers=fx_auditor, json={"reason": "done"})


def _blob(api: Api, data: bytes) -> str:
    """A binary literal for a hand-written statement."""
    return f"X'{data.hex()}'" if api.backend == "sqlite" else f"'\\x{data.hex()}'::bytea"


async def _tampered(api: Api, statements: list[str]) -> store.TrailReport:
    """Run ``statements`` with every audit trigger off (as a superuser could), verify, then roll back."""
    await api.seal()
    async with api.session_factory() as session:
        await session.begin()
        try:
            if api.backend == "postgresql":
                for table in GUARDED:
                    await session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            else:
                names = (await session.execute(text(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
                    f"({', '.join(repr(table) for table in GUARDED)})"))).scalars().all()
                for name in names:
                    await session.execute(text(f"DROP TRIGGER {name}"))
            for statement in statements:
                await session.execute(text(statement))
            return await store.verify_trail(session, _key(api).public_key())
        finally:
            await session.rollback()


async def test_verify_after_archiving_names_tampering(fx_archive_api: Api, fx_rep: dict[str, str]) -> None:
    api = fx_archive_api
    boundary = await _ensure_archived(api, fx_rep)
    for index in range(3):
        await _customer(api, fx_rep, f"Retained {index}")
    intact = await _verify(api)
    assert intact.ok, intact.detail
    target = boundary + 2
    async with api.session_factory() as session:
        body = bytes((await session.execute(select(AuditEventRecord.canonical)
                                            .where(AuditEventRecord.seq == target))).scalar_one())
    tampered = _blob(api, body.replace(b'"ok"', b'"no"'))
    flip = f"UPDATE audit_events SET canonical = {tampered} WHERE seq = {target}"
    altered = await _tampered(api, [flip])
    assert (altered.ok, altered.problem, altered.first_bad_seq) == (False, "altered", target), altered.detail
    gone = await _tampered(api, [f"DELETE FROM audit_event_fields WHERE seq = {boundary + 1}",
                                 f"DELETE FROM audit_event_subjects WHERE seq = {boundary + 1}",
                                 f"DELETE FROM audit_events WHERE seq = {boundary + 1}"])
    assert (gone.ok, gone.problem, gone.first_bad_seq) == (False, "deleted", boundary + 1), gone.detail
    relinked = await _tampered(api, [f"UPDATE audit_archives SET last_hash = {_blob(api, bytes(32))}"])
    assert not relinked.ok and relinked.first_bad_seq == boundary + 1, relinked.detail
    async with api.session_factory() as session:
        stored = bytes((await session.execute(select(AuditArchive.compact_range)
                                              .where(AuditArchive.last_seq == boundary))).scalar_one())
    restated = await _tampered(api, [f"UPDATE audit_archives SET compact_range = {_blob(api, bytes(32) + stored[32:])} "
                                     f"WHERE last_seq = {boundary}"])
    assert (restated.ok, restated.problem) == (False, "altered"), restated.detail
    # Events deleted under a forged but well-formed archive record (triggers off) leave no archive event.
    async with api.session_factory() as session, session.begin():
        cut, cut_hash = (await session.execute(select(AuditEventRecord.seq, AuditEventRecord.hash)
                                               .where(AuditEventRecord.seq == boundary + 2))).one()
        state = await store.merkle_state(session, cut)
    forged = await _tampered(api, [
        "INSERT INTO audit_archives (id, first_seq, last_seq, last_hash, compact_range, events, cutoff, file_name, "
        f"file_sha256, file_bytes, created_at, created_by) SELECT max(id) + 1, {boundary + 1}, {cut}, "
        f"{_blob(api, bytes(cut_hash))}, {_blob(api, state.to_bytes())}, 2, max(created_at), 'forged', '00', 1, "
        "max(created_at), 'x' FROM audit_archives",
        *(f"DELETE FROM {table} WHERE seq <= {cut}" for table in ("audit_event_fields", "audit_event_subjects",
                                                                    "audit_events"))])
    assert (forged.ok, forged.problem) == (False, "deleted"), forged.detail
    assert "no archive event" in forged.detail


async def test_legal_holds_through_the_api_are_recorded_and_guarded(fx_archive_api: Api,
                                                                    fx_auditor: dict[str, str]) -> None:
    api = fx_archive_api
    hold = await _place_hold(api, fx_auditor, customer_id="01a20800-a636-726e-84b7-a80b84dc865a")
    listed = (await api.client.get("/api/v1/audit/holds", params={"active": "true"}, headers=fx_auditor)).json()
    assert hold["id"] in [item["id"] for item in listed]
    for body, status in (({"reason": ""}, 422), ({"reason": "x", "since": "2026-01-02T00:00:00Z",
                                                  "until": "2026-01-01T00:00:00Z"}, 422),
                         ({"reason": "x", "customer_id": "not-a-uuid"}, 400), ({"reason": "x", "extra": 1}, 400)):
        response = await api.client.post("/api/v1/audit/holds", headers=fx_auditor, json=body)
        assert response.status_code in {status, 422}, (body, response.text)
    assert (await api.client.post("/api/v1/audit/holds/999999/release", headers=fx_auditor,
                                  json={"reason": "x"})).status_code == 404
    release = await api.client.post(f"/api/v1/audit/holds/{hold['id']}/release", headers=fx_auditor,
                                    json={"reason": "matter settled"})
    assert release.status_code == 200
    again = await api.client.post(f"/api/v1/audit/holds/{hold['id']}/release", headers=fx_auditor,
                                  json={"reason": "again"})
    assert again.status_code == 409
    secadmin = await api.login(["secadmin"])
    assert (await api.client.post("/api/v1/audit/holds", headers=secadmin, json={"reason": "x"})).status_code == 403
    assert (await api.client.get("/api/v1/audit/archives", headers=secadmin)).status_code == 403
    changes = (await api.client.get("/api/v1/audit/events", params={"entity": "legal_hold"}, headers=fx_auditor)
               ).json()["items"]
    states = [(event["entity_id"], (event["after"] or {}).get("state")) for event in changes]
    assert (str(hold["id"]), "placed") in states and (str(hold["id"]), "released") in states
    placed = next(e for e in changes if e["entity_id"] == str(hold["id"]) and e["after"]["state"] == "placed")
    assert (placed["action"], placed["reason"]) == ("policy_change", "case 2026-17")


async def test_holds_and_archives_from_the_command_line(fx_archive_api: Api, fx_rep: dict[str, str]) -> None:
    api = fx_archive_api
    await _ensure_archived(api, fx_rep)
    placed = _cli(api, "audit", "hold", "place", "--reason", "regulator request 7", "--since", "2026-01-01T00:00:00Z")
    assert placed.returncode == 0, placed.stderr
    hold_id = placed.stdout.split()[2]
    listed = _cli(api, "audit", "hold", "list")
    assert f"id={hold_id}" in listed.stdout and "regulator request 7" in listed.stdout
    dry = _cli(api, "audit", "archive", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("would archive 0 event(s)"), dry.stdout + dry.stderr
    nothing = _cli(api, "audit", "archive")
    assert nothing.returncode == 0 and "nothing more to archive" in nothing.stdout, nothing.stdout + nothing.stderr
    released = _cli(api, "audit", "hold", "release", hold_id, "--reason", "answered")
    assert released.returncode == 0 and "released" in released.stdout, released.stderr
    archives = _cli(api, "audit", "archives")
    assert archives.returncode == 0 and "archive=1" in archives.stdout
    verified = _cli(api, "audit", "verify")
    assert verified.returncode == 0 and "archived" in verified.stdout, verified.stdout + verified.stderr
    await api.seal()
    async with api.session_factory() as session:
        actions = (await session.execute(select(AuditEventRecord.canonical).where(
            AuditEventRecord.entity == "legal_hold", AuditEventRecord.entity_id == hold_id))).scalars().all()
    assert [decode_event(bytes(body))["actor_name"] for body in actions] == ["cli", "cli"]


async def test_the_servers_archive_schedule_archives_like_the_command(fx_archive_api: Api, fx_rep: dict[str, str]
                                                                     ) -> None:
    api = fx_archive_api
    before = await _ensure_archived(api, fx_rep)
    for index in range(3):
        await _customer(api, fx_rep, f"Scheduled {index}")
    await api.seal()
    # One due time's run (run_archive_schedule calls it), with expiry "as of" far in the future.
    await run_scheduled_archive(_settings(api), now=utc_now() + FUTURE)
    after = await _boundary(api)
    assert after > before + 3  # the three customers' events, at least, left the database for an archive file
    async with api.session_factory() as session:
        archives = await retention.list_archives(session)
    newest = archives[-1]
    assert newest["last_seq"] == after and newest["first_seq"] == before + 1
    assert Path(str(newest["file"])).name in {path.name for path in
                                              retention.archive_dir(_settings(api).data_dir, "").iterdir()}
    await api.seal()
    async with api.session_factory() as session:
        recorded = (await session.execute(select(AuditEventRecord.canonical).where(
            AuditEventRecord.action == "archive").order_by(AuditEventRecord.seq.desc()).limit(1))).scalar_one()
    assert decode_event(bytes(recorded))["actor_name"] == "audit schedule"
    report = await _verify(api)
    assert report.ok, report


def _runtime_login_url(owner_url: str, role: str) -> str:
    """``owner_url`` logged in as ``role`` instead (trust authentication: no password)."""
    scheme, rest = owner_url.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"


def test_archiving_as_the_runtime_role_is_refused_before_anything_is_written(
        fx_archive_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli import main
    from server.errors import Forbidden, StrongroomError
    from server.ops.audit_archive import refuse_schedule_without_rights

    scheduled = {"data_dir": str(tmp_path), "keys_dir": str(fx_archive_settings.resolved_keys_dir),
                 "log_level": "WARNING", "audit_archive_schedule": "daily 03:00"}
    owner_url = fx_archive_settings.resolved_database_url
    # The owner (and SQLite, which has no roles) may archive: a schedule is accepted.
    refuse_schedule_without_rights(load_settings({}, database_url=owner_url, **scheduled))
    if fx_archive_settings.is_sqlite:
        return
    role = f"strongroom_runtime_{secrets.token_hex(3)}"
    _admin_sql(f"CREATE ROLE {role} LOGIN IN ROLE strongroom_app")
    try:
        runtime = load_settings({}, database_url=_runtime_login_url(owner_url, role), **scheduled)
        with pytest.raises(StrongroomError, match="schema owner"):
            refuse_schedule_without_rights(runtime)
        refuse_schedule_without_rights(load_settings({}, database_url=runtime.resolved_database_url,
                                                         **{**scheduled, "audit_archive_schedule": "off"}))
        for name, value in (("STRONGROOM_DATA_DIR", runtime.data_dir),
                            ("STRONGROOM_DATABASE_URL", runtime.resolved_database_url),
                            ("STRONGROOM_KEYS_DIR", str(runtime.resolved_keys_dir)),
                            ("STRONGROOM_AUDIT_ARCHIVE_SCHEDULE", "daily 03:00"), ("STRONGROOM_LOG_LEVEL", "WARNING")):
            monkeypatch.setenv(name, value)
        assert main(["serve"]) == 1
        assert "STRONGROOM_AUDIT_ARCHIVE_SCHEDULE is set, but this database login may not archive" in \
            capsys.readouterr().err

        async def archive_as_runtime() -> tuple[int, int]:
            owner_engine = create_engine(owner_url)
            try:  # events the owner could archive, so that only the login's rights stand in the way
                async with create_session_factory(owner_engine)() as session:
                    for _ in range(3):
                        async with session.begin():
                            await trail.record(session, action=AuditAction.LOGIN, actor=actor_of(system_principal(
                                "test")))
                    await seal_pending(session)
                    async with session.begin():
                        plan = await retention.plan_archive(session, cutoff=utc_now() + FUTURE, max_events=1000)
                    assert plan.events > 0
            finally:
                await owner_engine.dispose()
            engine = create_engine(runtime.resolved_database_url)
            try:
                async with create_session_factory(engine)() as session:
                    async with session.begin():
                        checkpoints = (await session.execute(select(func.count()).select_from(AuditCheckpoint))
                                       ).scalar_one()
                    with pytest.raises(Forbidden, match="schema owner"):
                        async for _ in retention.archive_expired(
                                session, signing_key=store.load_or_create_audit_key(
                                    Path(runtime.resolved_keys_dir), create=False), directory=tmp_path / "archive",
                                retention_days=1, actor=actor_of(system_principal("test")),
                                now=utc_now() + FUTURE):
                            pass
                    async with session.begin():
                        after = (await session.execute(select(func.count()).select_from(AuditCheckpoint))
                                 ).scalar_one()
                    return checkpoints, after
            finally:
                await engine.dispose()

        before, after = asyncio.run(archive_as_runtime())
        assert after == before  # no checkpoint signed
        assert not (tmp_path / "archive").exists()  # no file written
    finally:
        _admin_sql(f"DROP ROLE IF EXISTS {role}")


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root (CI runs as root)")
async def test_an_archive_run_as_root_leaves_files_the_service_user_owns(fx_archive_api: Api, fx_rep: dict[str, str],
                                                                         tmp_path: Path) -> None:
    """The deployments run `audit archive` as root on PostgreSQL (so the server's user never sees the owner's
    login): the archive file and a checkpoint sink it creates must still belong to the service user, or the
    backup job could not copy the archive and the server could not append to the sink. Kept last: it archives
    with a sink of its own."""
    api = fx_archive_api
    nobody = 65534
    directory = retention.archive_dir(_settings(api).data_dir, "")
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, nobody, nobody)
    sink_dir = tmp_path / "sink"
    sink_dir.mkdir()
    os.chown(sink_dir, nobody, nobody)
    for index in range(3):
        await _customer(api, fx_rep, f"Archived as root {index}")
    async with api.session_factory() as session:
        outcomes = [outcome async for outcome in retention.archive_expired(
            session, signing_key=_key(api), directory=directory, retention_days=_settings(api).audit_retention_days,
            actor=actor_of(system_principal("tests")), sink=sink_dir / "checkpoints.log", now=utc_now() + FUTURE)]
    written = [outcome for outcome in outcomes if isinstance(outcome, retention.ArchiveResult)]
    assert written, outcomes
    for result in written:  # written 0600, as always
        info = result.path.stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (nobody, nobody, 0o600), result.path
    sink = (sink_dir / "checkpoints.log").stat()
    assert (sink.st_uid, sink.st_gid) == (nobody, nobody)
