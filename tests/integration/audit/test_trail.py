"""The audit trail from the attacker's side, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from server.audit.sealer import unchained_arrays
from server.audit.store import load_or_create_audit_key, make_checkpoint, verify_trail
from server.audit.tags import ActorType, AuditAction
from server.audit.trail import AuditActor, pending_event
from server.db import WRITE_OPTION


async def _events(fx_api: Any, auditor: dict[str, str], **filters: Any) -> list[dict[str, Any]]:
    response = await fx_api.client.get("/api/v1/audit/events", params={"limit": 1000, **filters}, headers=auditor)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


@pytest.fixture(scope="session", name="fx_auditor")
async def fx_auditor(fx_api: Any) -> dict[str, str]:
    return await fx_api.login(["auditor"])


def _key(fx_api: Any) -> Any:
    return load_or_create_audit_key(Path(fx_api.app.state.resources.settings.resolved_keys_dir), create=False)


async def test_changes_reads_reveals_denials_and_logins_are_recorded(fx_api: Any, fx_auditor: dict[str, str]) -> None:
    rep = await fx_api.login(["sales_rep"])
    support = await fx_api.login(["support_agent"])
    customer = (await fx_api.client.post("/api/v1/customers", headers=rep,
                                         json={"name": "Audited Ltd", "kind": "company"})).json()
    contact = (await fx_api.client.post("/api/v1/contacts", headers=rep, json={
        "customer_id": customer["id"], "name": "Zhao Lei", "phone": "13912345678",
        "email": "zhao.lei@example.com"})).json()
    await fx_api.client.patch(f"/api/v1/customers/{customer['id']}", headers=rep, json={"tier": "B", "version": 1})
    await fx_api.client.get(f"/api/v1/contacts/{contact['id']}", headers=rep)
    await fx_api.client.get(f"/api/v1/contacts/{contact['id']}", headers=support,
                            params={"reveal": "phone", "reason": "caller verification for ticket 7"})
    await fx_api.client.post("/api/v1/customers", headers=support, json={"name": "x", "kind": "company"})
    await fx_api.client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "nobody-here",
                                                         "password": "wrong-password-1"})

    about_customer = await _events(fx_api, fx_auditor, customer_id=customer["id"])
    actions = [(event["action"], event["entity"]) for event in about_customer]
    assert ("create", "customer") in actions
    assert ("create", "contact") in actions
    assert ("update", "customer") in actions
    update = next(e for e in about_customer if e["action"] == "update")
    assert (update["before"], update["after"], update["fields"]) == ({"tier": None}, {"tier": "B"}, ["tier"])
    read = next(e for e in about_customer if e["action"] == "read" and e["entity"] == "contact")
    assert {"phone", "email"} <= set(read["fields"])
    reveal = next(e for e in about_customer if e["action"] == "reveal")
    assert reveal["fields"] == ["phone"]
    assert reveal["reason"] == "caller verification for ticket 7"
    assert reveal["actor_roles"] == ["support_agent"]

    denied = await _events(fx_api, fx_auditor, action="denied", entity="customer")
    assert any(event["outcome"] == "denied" and "create" in (event["reason"] or "") for event in denied)
    failed = await _events(fx_api, fx_auditor, action="login_failed")
    assert any(event["actor_name"] == "nobody-here" and event["reason"] == "unknown user" for event in failed)
    await fx_api.client.get(f"/api/v1/customers/{customer['id']}/360", headers=rep)
    view_events = [e for e in await _events(fx_api, fx_auditor, customer_id=customer["id"], action="read")
                   if (e["after"] or {}).get("view") == "360"]
    assert view_events and "contact.phone" in view_events[0]["fields"]
    assert contact["id"] in view_events[0]["after"]["records"]
    by_field = await _events(fx_api, fx_auditor, field="phone", customer_id=customer["id"])
    assert {event["action"] for event in by_field} >= {"create", "read", "reveal"}
    # A list read is about several customers at once: found by each of them (through audit_event_subjects).
    listed = await fx_api.client.get("/api/v1/contacts", headers=rep, params={"customer_id": customer["id"]})
    assert contact["id"] in [item["id"] for item in listed.json()["items"]]
    list_reads = [e for e in await _events(fx_api, fx_auditor, customer_id=customer["id"], action="read")
                  if e["entity_id"] is None and contact["id"] in (e["after"] or {}).get("records", [])]
    assert list_reads


async def test_personal_values_never_reach_the_trail_in_clear(fx_api: Any) -> None:
    rep = await fx_api.login(["sales_rep"])
    customer = (await fx_api.client.post("/api/v1/customers", headers=rep,
                                         json={"name": "Private Co", "kind": "individual"})).json()
    await fx_api.client.post("/api/v1/contacts", headers=rep, json={
        "customer_id": customer["id"], "name": "Qian Mo", "email": "qian.mo.private@example.com",
        "national_id": "110101199003079999", "phone": "13700001111"})
    await fx_api.seal()
    async with fx_api.session_factory() as session:
        stored = b"".join(bytes(row[0]) for row in (await session.execute(
            text("SELECT canonical FROM audit_events WHERE subject_id = :s"), {"s": customer["id"]})).all())
    assert stored
    for secret in (b"qian.mo.private@example.com", b"110101199003079999", b"13700001111"):
        assert secret not in stored


async def test_database_refuses_to_alter_the_trail(fx_api: Any, fx_auditor: dict[str, str]) -> None:
    await fx_api.client.post("/api/v1/customers", headers=await fx_api.login(["sales_rep"]),
                             json={"name": "Row for the triggers", "kind": "company"})
    assert (await fx_api.client.post("/api/v1/audit/checkpoints", headers=fx_auditor)).status_code == 200
    for statement in ("UPDATE audit_events SET outcome = 'ok'", "DELETE FROM audit_events",
                      "DELETE FROM audit_event_fields", "UPDATE audit_checkpoints SET key_id = 'x'"):
        async with fx_api.session_factory() as session:
            with pytest.raises(DBAPIError, match="append-only"):
                async with session.begin():
                    await session.execute(text(statement))


async def test_runtime_role_has_insert_and_select_only(fx_api: Any) -> None:
    if fx_api.backend == "sqlite":
        # SQLite has no roles: the guarantee there is the triggers, all of which the migration must have made.
        async with fx_api.session_factory() as session:
            triggers = set((await session.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"))).scalars())
        assert {f"{table}_no_{operation}" for table in ("audit_events", "audit_event_fields", "audit_checkpoints")
                for operation in ("update", "delete")} <= triggers
        return
    async with fx_api.session_factory() as session, session.begin():
        await session.execute(text("SET LOCAL ROLE strongroom_app"))
        assert (await session.execute(text("SELECT count(*) FROM audit_events"))).scalar_one() > 0
        await session.execute(text("SAVEPOINT before_update"))
        with pytest.raises(DBAPIError, match="permission denied"):
            await session.execute(text("UPDATE audit_events SET outcome = 'ok' WHERE seq = 1"))
        await session.execute(text("ROLLBACK TO SAVEPOINT before_update"))
        await session.execute(text("SAVEPOINT before_truncate"))
        with pytest.raises(DBAPIError, match="permission denied"):
            await session.execute(text("TRUNCATE audit_events CASCADE"))
        await session.execute(text("ROLLBACK TO SAVEPOINT before_truncate"))
        # The read-event writer's one-call append works with the runtime role's rights (INSERT and SELECT).
        row = pending_event(action=AuditAction.READ, actor=AuditActor(ActorType.SYSTEM, "test", "role test"),
                            entity="contact", entity_id="runtime-role-append", fields=["email"])
        connection = await session.connection()
        last = (await connection.exec_driver_sql(
            "SELECT strongroom_audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            unchained_arrays([row]))).scalar_one()
        assert (await session.execute(text("SELECT entity_id FROM audit_events WHERE seq = :seq"),
                                      {"seq": last})).scalar_one() == "runtime-role-append"
        await session.rollback()


async def _tampered(fx_api: Any, statements: list[str], checkpoint_first: bool = False) -> Any:
    """Run ``statements`` with the append-only triggers off (as a superuser could), verify, then roll back."""
    key = _key(fx_api)
    await fx_api.seal()  # every event chained, so the server's sealer writes nothing while the test tampers
    async with fx_api.session_factory() as session:
        await session.begin()
        try:
            if checkpoint_first:
                await make_checkpoint(session, key)
            if fx_api.backend == "postgresql":
                for table in ("audit_events", "audit_event_fields", "audit_checkpoints"):
                    await session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            else:
                for table in ("audit_events", "audit_event_fields", "audit_checkpoints"):
                    for operation in ("update", "delete"):
                        await session.execute(text(f"DROP TRIGGER {table}_no_{operation}"))
            for statement in statements:
                await session.execute(text(statement))
            return await verify_trail(session, key.public_key())
        finally:
            await session.rollback()


async def test_tampering_is_detected_with_the_right_sequence(fx_api: Any) -> None:
    rep = await fx_api.login(["sales_rep"])
    for index in range(6):
        await fx_api.client.post("/api/v1/customers", headers=rep, json={"name": f"T{index}", "kind": "company"})
    await fx_api.seal()
    async with fx_api.session_factory() as session:
        # The create event of the third customer: a 'company' event with later events after it.
        target = (await session.execute(text(
            "SELECT seq FROM audit_events WHERE action = 'create' AND entity = 'customer' "
            "ORDER BY seq DESC LIMIT 1 OFFSET 3"))).scalar_one()
        intact = await verify_trail(session, _key(fx_api).public_key())
    assert intact.ok, intact.detail
    flip = ("UPDATE audit_events SET canonical = CAST(replace(CAST(canonical AS TEXT), 'company', 'c0mpany') AS BLOB) "
            "WHERE seq = {}"
            if fx_api.backend == "sqlite" else
            "UPDATE audit_events SET canonical = overlay(canonical placing 'X'::bytea from 20 for 1) WHERE seq = {}")
    altered = await _tampered(fx_api, [flip.format(target)])
    assert (altered.ok, altered.problem, altered.first_bad_seq) == (False, "altered", target)

    deleted = await _tampered(fx_api, [f"DELETE FROM audit_event_fields WHERE seq = {target}",
                                       f"DELETE FROM audit_events WHERE seq = {target}"])
    assert (deleted.ok, deleted.problem, deleted.first_bad_seq) == (False, "deleted", target)

    swapped = await _tampered(fx_api, [
        f"DELETE FROM audit_event_fields WHERE seq IN ({target}, {target + 1})",
        f"UPDATE audit_events SET seq = -1 WHERE seq = {target}",
        f"UPDATE audit_events SET seq = {target} WHERE seq = {target + 1}",
        f"UPDATE audit_events SET seq = {target + 1} WHERE seq = -1"])
    assert not swapped.ok
    assert swapped.problem in {"reordered", "altered"}
    assert swapped.first_bad_seq == target

    inserted = await _tampered(fx_api, [
        f"DELETE FROM audit_event_fields WHERE seq > {target}",
        f"UPDATE audit_events SET seq = seq + 1000000 WHERE seq > {target}",
        f"INSERT INTO audit_events (seq, ts, action, outcome, canonical, prev_hash, hash) "
        f"SELECT {target + 1}, ts, action, outcome, canonical, prev_hash, hash FROM audit_events WHERE seq = {target}",
        "UPDATE audit_events SET seq = seq - 1000000 + 1 WHERE seq > 1000000"])
    assert not inserted.ok
    assert inserted.first_bad_seq == target + 1

    truncated = await _tampered(fx_api, [f"DELETE FROM audit_event_fields WHERE seq > {target}",
                                         f"DELETE FROM audit_events WHERE seq > {target}"], checkpoint_first=True)
    assert (truncated.ok, truncated.problem, truncated.first_bad_seq) == (False, "truncated", target + 1)


async def test_concurrent_writers_make_one_chain(fx_api: Any, fx_auditor: dict[str, str]) -> None:
    writers = [await fx_api.login(["sales_rep"]) for _ in range(16)]

    async def write(headers: dict[str, str], index: int) -> int:
        statuses = []
        for round_ in range(3):
            response = await fx_api.client.post("/api/v1/customers", headers=headers,
                                                json={"name": f"C{index}-{round_}", "kind": "company"})
            statuses.append(response.status_code)
        return statuses.count(201)

    created = await asyncio.gather(*(write(headers, index) for index, headers in enumerate(writers)))
    assert sum(created) == 48
    report = await fx_api.client.get("/api/v1/audit/verify", headers=fx_auditor)
    assert report.status_code == 200
    assert report.json()["ok"], report.json()
    async with fx_api.session_factory() as session:
        count, highest = (await session.execute(text("SELECT count(*), max(seq) FROM audit_events"))).one()
    assert count == highest  # no gap, no duplicate


async def test_export_verifies_offline_and_an_edit_is_caught(fx_api: Any, fx_auditor: dict[str, str],
                                                             tmp_path: Path) -> None:
    rep = await fx_api.login(["sales_rep"])
    customer = (await fx_api.client.post("/api/v1/customers", headers=rep,
                                         json={"name": "Subject Access", "kind": "company"})).json()
    await fx_api.client.patch(f"/api/v1/customers/{customer['id']}", headers=rep, json={"tier": "A", "version": 1})
    exported = await fx_api.client.get("/api/v1/audit/export", params={"customer_id": customer["id"]},
                                       headers=fx_auditor)
    assert exported.status_code == 200, exported.text
    export_file, key_file = tmp_path / "export.jsonl", tmp_path / "audit.pem"
    export_file.write_bytes(exported.content)
    key_file.write_text((await fx_api.client.get("/api/v1/audit/public-key", headers=fx_auditor)).text)
    env = {key: value for key, value in os.environ.items() if not key.startswith("STRONGROOM_")}
    command = [sys.executable, "-m", "server.cli", "audit", "verify", "--export", str(export_file),
               "--public-key", str(key_file)]
    intact = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    export_file.write_text(_edit_update_event(exported.text))
    assert export_file.read_text() != exported.text
    edited = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert edited.returncode == 1, edited.stdout
    missing = subprocess.run([*command[:-1], str(tmp_path / "absent.pem")], env=env, capture_output=True,
                             text=True, check=False)
    assert missing.returncode == 2


async def test_only_auditors_read_the_trail(fx_api: Any) -> None:
    for role in ("secadmin", "sysadmin", "sales_manager"):
        headers = await fx_api.login([role])
        assert (await fx_api.client.get("/api/v1/audit/events", headers=headers)).status_code == 403
        assert (await fx_api.client.get("/api/v1/audit/verify", headers=headers)).status_code == 403
    marker = str(uuid.uuid4())
    assert marker


def _edit_update_event(export: str) -> str:
    """The export with one event's recorded change rewritten, as someone editing the file would."""
    import base64
    import json

    lines = export.splitlines(keepends=True)
    for index, line in enumerate(lines):
        record = json.loads(line)
        body = base64.b64decode(record["canonical"]) if record.get("type") == "event" else b""
        if b'"tier":"A"' in body:
            record["canonical"] = base64.b64encode(body.replace(b'"tier":"A"', b'"tier":"C"')).decode()
            lines[index] = json.dumps(record, separators=(",", ":")) + "\n"
            return "".join(lines)
    raise AssertionError("the export holds no update event to edit")


async def test_truncation_with_its_checkpoints_deleted_is_caught_by_the_external_copy(fx_api: Any,
                                                                                   tmp_path: Path) -> None:
    rep = await fx_api.login(["sales_rep"])
    for index in range(3):
        await fx_api.client.post("/api/v1/customers", headers=rep, json={"name": f"S{index}", "kind": "company"})
    key, sink = _key(fx_api), tmp_path / "checkpoints.log"
    await fx_api.seal()  # every event chained, so the server's sealer writes nothing while the test tampers
    async with fx_api.session_factory() as session:
        await session.begin()
        # Take the write lock at BEGIN (IMMEDIATE on SQLite): this transaction reads the head, then writes, and a
        # background checkpoint committed in between would otherwise fail it with "database is locked".
        await session.connection(execution_options={WRITE_OPTION: True})
        try:
            assert await make_checkpoint(session, key, sink) is not None
            head = (await session.execute(text("SELECT max(seq) FROM audit_events"))).scalar_one()
            if fx_api.backend == "postgresql":
                for table in ("audit_events", "audit_event_fields", "audit_checkpoints"):
                    await session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            else:
                for table in ("audit_events", "audit_event_fields", "audit_checkpoints"):
                    for operation in ("update", "delete"):
                        await session.execute(text(f"DROP TRIGGER {table}_no_{operation}"))
            await session.execute(text(f"DELETE FROM audit_event_fields WHERE seq > {head - 2}"))
            await session.execute(text(f"DELETE FROM audit_events WHERE seq > {head - 2}"))
            await session.execute(text("DELETE FROM audit_checkpoints"))
            without_copy = await verify_trail(session, key.public_key())
            with_copy = await verify_trail(session, key.public_key(), sink=sink)
        finally:
            await session.rollback()
    assert without_copy.ok  # the database alone cannot tell: this is why the copy exists
    assert (with_copy.ok, with_copy.problem, with_copy.first_bad_seq) == (False, "truncated", head - 1)
