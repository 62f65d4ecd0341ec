"""Service records: SLA due times from priority, validated status flow, satisfaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


async def _record(fx_api: Any, headers: dict[str, str], customer_id: str, priority: str = "high") -> dict[str, Any]:
    response = await fx_api.client.post("/api/v1/service-records", headers=headers, json={
        "customer_id": customer_id, "type": "repair", "priority": priority, "description": "Pump fails at start"})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_due_times_follow_priority(fx_api: Any, fx_support_headers: dict[str, str],
                                         fx_customer: dict[str, Any]) -> None:
    record = await _record(fx_api, fx_support_headers, fx_customer["id"], "urgent")
    opened = datetime.fromisoformat(record["created_at"])
    assert datetime.fromisoformat(record["first_response_due"]) - opened == timedelta(hours=1)
    assert datetime.fromisoformat(record["resolution_due"]) - opened == timedelta(hours=4)
    assert record["status"] == "open"

    lowered = await fx_api.client.patch(f"/api/v1/service-records/{record['id']}", headers=fx_support_headers,
                                        json={"priority": "low", "version": 1})
    assert lowered.status_code == 200
    assert datetime.fromisoformat(lowered.json()["resolution_due"]) - opened == timedelta(days=7)


async def test_status_flow(fx_api: Any, fx_support_headers: dict[str, str], fx_customer: dict[str, Any]) -> None:
    record = await _record(fx_api, fx_support_headers, fx_customer["id"])
    url = f"/api/v1/service-records/{record['id']}"

    skip = await fx_api.client.patch(url, headers=fx_support_headers, json={"status": "resolved", "version": 1})
    assert skip.status_code == 422
    early_score = await fx_api.client.patch(url, headers=fx_support_headers, json={"satisfaction": 5, "version": 1})
    assert early_score.status_code == 422

    working = await fx_api.client.patch(url, headers=fx_support_headers, json={"status": "in_progress", "version": 1})
    assert working.status_code == 200
    assert working.json()["first_responded_at"] is not None

    no_resolution = await fx_api.client.patch(url, headers=fx_support_headers,
                                              json={"status": "resolved", "version": 2})
    assert no_resolution.status_code == 422
    assert no_resolution.json()["field"] == "resolution"

    resolved = await fx_api.client.patch(url, headers=fx_support_headers, json={
        "status": "resolved", "resolution": "Replaced the seal", "satisfaction": 4, "version": 2})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolved_at"] is not None
    assert resolved.json()["satisfaction"] == 4

    closed = await fx_api.client.patch(url, headers=fx_support_headers, json={"status": "closed", "version": 3})
    assert closed.status_code == 200
    final = await fx_api.client.patch(url, headers=fx_support_headers, json={"status": "in_progress", "version": 4})
    assert final.status_code == 422


async def test_contact_must_belong_to_customer(fx_api: Any, fx_support_headers: dict[str, str],
                                               fx_customer: dict[str, Any]) -> None:
    sales = await fx_api.login(["sales_rep"])
    other = (await fx_api.client.post("/api/v1/customers", headers=sales,
                                      json={"name": "Other", "kind": "company"})).json()
    contact = (await fx_api.client.post("/api/v1/contacts", headers=sales,
                                        json={"customer_id": other["id"], "name": "Ola"})).json()
    response = await fx_api.client.post("/api/v1/service-records", headers=fx_support_headers, json={
        "customer_id": fx_customer["id"], "contact_id": contact["id"], "type": "inquiry", "priority": "low",
        "description": "?"})
    assert response.status_code == 422
    assert response.json()["field"] == "contact_id"
