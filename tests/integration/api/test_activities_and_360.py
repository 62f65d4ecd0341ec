"""Activities and the customer 360 view."""

from __future__ import annotations

from typing import Any


async def test_customer_360(fx_api: Any, fx_headers: dict[str, str], fx_support_headers: dict[str, str],
                            fx_customer: dict[str, Any]) -> None:
    customer_id = fx_customer["id"]
    contact = (await fx_api.client.post("/api/v1/contacts", headers=fx_headers,
                                        json={"customer_id": customer_id, "name": "Hans Müller"})).json()
    open_opportunity = (await fx_api.client.post("/api/v1/opportunities", headers=fx_headers, json={
        "customer_id": customer_id, "title": "Open deal", "amount": "10", "currency": "EUR"})).json()
    won = (await fx_api.client.post("/api/v1/opportunities", headers=fx_headers, json={
        "customer_id": customer_id, "title": "Won deal", "amount": "20", "currency": "EUR", "stage": "won"})).json()
    ticket = (await fx_api.client.post("/api/v1/service-records", headers=fx_support_headers, json={
        "customer_id": customer_id, "type": "inquiry", "priority": "normal", "description": "Question"})).json()
    early = await fx_api.client.post("/api/v1/activities", headers=fx_headers, json={
        "customer_id": customer_id, "contact_id": contact["id"], "kind": "call",
        "occurred_at": "2020-01-01T09:00:00+08:00", "summary": "First call"})
    assert early.status_code == 201, early.text
    late = await fx_api.client.post("/api/v1/activities", headers=fx_headers, json={
        "customer_id": customer_id, "opportunity_id": open_opportunity["id"], "kind": "meeting",
        "occurred_at": "2099-01-01T09:00:00Z", "summary": "Future meeting"})
    assert late.status_code == 201

    view = await fx_api.client.get(f"/api/v1/customers/{customer_id}/360", headers=fx_headers)
    assert view.status_code == 200, view.text
    body = view.json()
    assert body["customer"]["id"] == customer_id
    assert [c["id"] for c in body["contacts"]] == [contact["id"]]
    assert [o["id"] for o in body["open_opportunities"]] == [open_opportunity["id"]]
    assert won["id"] not in {o["id"] for o in body["open_opportunities"]}
    assert [s["id"] for s in body["recent_service_records"]] == [ticket["id"]]
    timeline = body["timeline"]
    times = [entry["at"] for entry in timeline]
    assert times == sorted(times, reverse=True)
    assert timeline[0]["entity_id"] == late.json()["id"]
    assert timeline[-1]["entity_id"] == early.json()["id"]
    kinds = {entry["type"] for entry in timeline}
    assert {"activity.call", "activity.meeting", "service_record.opened.inquiry", "opportunity.stage.won",
            "opportunity.stage.qualification"} <= kinds

    missing = await fx_api.client.get("/api/v1/customers/00000000-0000-7000-8000-000000000000/360",
                                      headers=fx_headers)
    assert missing.status_code == 404


async def test_activity_links_must_match_customer(fx_api: Any, fx_headers: dict[str, str],
                                                  fx_customer: dict[str, Any]) -> None:
    other = (await fx_api.client.post("/api/v1/customers", headers=fx_headers,
                                      json={"name": "Other", "kind": "company"})).json()
    foreign = (await fx_api.client.post("/api/v1/opportunities", headers=fx_headers, json={
        "customer_id": other["id"], "title": "x", "amount": "1", "currency": "USD"})).json()
    response = await fx_api.client.post("/api/v1/activities", headers=fx_headers, json={
        "customer_id": fx_customer["id"], "opportunity_id": foreign["id"], "kind": "note",
        "occurred_at": "2026-01-01T00:00:00Z", "summary": "x"})
    assert response.status_code == 422
    assert response.json()["field"] == "opportunity_id"


async def test_activity_update_and_filter(fx_api: Any, fx_headers: dict[str, str],
                                          fx_customer: dict[str, Any]) -> None:
    created = (await fx_api.client.post("/api/v1/activities", headers=fx_headers, json={
        "customer_id": fx_customer["id"], "kind": "email", "occurred_at": "2026-01-01T00:00:00Z",
        "summary": "Sent quote"})).json()
    updated = await fx_api.client.patch(f"/api/v1/activities/{created['id']}",
                                        headers={**fx_headers, "If-Match": '"1"'}, json={"summary": "Sent quote v2"})
    assert updated.status_code == 200
    listed = await fx_api.client.get("/api/v1/activities", headers=fx_headers,
                                     params={"customer_id": fx_customer["id"], "kind": "email",
                                             "sort": "-occurred_at"})
    assert [item["summary"] for item in listed.json()["items"]] == ["Sent quote v2"]
