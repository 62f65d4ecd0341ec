"""Contacts over HTTP: customer link, formats, consent, national id only for individuals."""

from __future__ import annotations

from typing import Any


async def _individual(fx_api: Any, headers: dict[str, str]) -> dict[str, Any]:
    response = await fx_api.client.post("/api/v1/customers", headers=headers,
                                        json={"name": "Chen Jing", "kind": "individual"})
    assert response.status_code == 201
    return dict(response.json())


async def test_contact_lifecycle_and_consent(fx_api: Any, fx_headers: dict[str, str]) -> None:
    customer = await _individual(fx_api, fx_headers)
    created = await fx_api.client.post("/api/v1/contacts", headers=fx_headers, json={
        "customer_id": customer["id"], "name": "陈静", "phone": "+86 138 0013 8000", "email": "chen@example.com",
        "national_id": "110101199003074512", "marketing_consent": True, "consent_source": "web form"})
    assert created.status_code == 201, created.text
    contact = created.json()
    assert contact["marketing_consent"] is True
    assert contact["consent_at"] is not None
    # Sales roles see the national id masked; revealing it needs a reason and is audited.
    assert contact["national_id"] == "**************4512"
    revealed = await fx_api.client.get(f"/api/v1/contacts/{contact['id']}", headers=fx_headers,
                                       params={"reveal": "national_id", "reason": "identity check for contract"})
    assert revealed.json()["national_id"] == "110101199003074512"

    withdrawn = await fx_api.client.patch(f"/api/v1/contacts/{contact['id']}", headers=fx_headers,
                                          json={"marketing_consent": False, "version": 1})
    assert withdrawn.status_code == 200
    assert withdrawn.json()["marketing_consent"] is False
    assert withdrawn.json()["consent_at"] > contact["consent_at"]

    listed = await fx_api.client.get("/api/v1/contacts", params={"customer_id": customer["id"]}, headers=fx_headers)
    assert [item["id"] for item in listed.json()["items"]] == [contact["id"]]


async def test_consent_needs_source(fx_api: Any, fx_headers: dict[str, str], fx_customer: dict[str, Any]) -> None:
    response = await fx_api.client.post("/api/v1/contacts", headers=fx_headers, json={
        "customer_id": fx_customer["id"], "name": "Li Na", "marketing_consent": True})
    assert response.status_code == 422
    assert response.json()["field"] == "consent_source"


async def test_national_id_only_for_individuals(fx_api: Any, fx_headers: dict[str, str],
                                                fx_customer: dict[str, Any]) -> None:
    response = await fx_api.client.post("/api/v1/contacts", headers=fx_headers, json={
        "customer_id": fx_customer["id"], "name": "Li Na", "national_id": "110101199003074512"})
    assert response.status_code == 422
    assert response.json()["field"] == "national_id"
    assert "110101199003074512" not in response.text


async def test_invalid_email_is_not_echoed(fx_api: Any, fx_headers: dict[str, str],
                                           fx_customer: dict[str, Any]) -> None:
    response = await fx_api.client.post("/api/v1/contacts", headers=fx_headers, json={
        "customer_id": fx_customer["id"], "name": "Li Na", "email": "not-an-email-secret-value"})
    assert response.status_code == 422
    assert "not-an-email-secret-value" not in response.text
