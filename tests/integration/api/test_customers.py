"""Customers over HTTP: create, read, list with filters/sort/cursor, update with versions, delete."""

from __future__ import annotations

import uuid
from typing import Any


async def test_create_read_and_etag(fx_api: Any, fx_headers: dict[str, str]) -> None:
    body = {"name": "Acme Industrial", "kind": "company", "tier": "A", "industry": "manufacturing",
            "region": "East", "source_channel": "referral", "tags": ["vip", "vip", " key "], "tax_id": "91310000X"}
    created = await fx_api.client.post("/api/v1/customers", json=body, headers=fx_headers)
    assert created.status_code == 201, created.text
    customer = created.json()
    assert uuid.UUID(customer["id"]).version == 7
    assert customer["lifecycle_stage"] == "lead"
    assert customer["tags"] == ["vip", "key"]
    assert customer["version"] == 1
    assert created.headers["etag"] == '"1"'

    read = await fx_api.client.get(f"/api/v1/customers/{customer['id']}", headers=fx_headers)
    assert read.status_code == 200
    assert read.json() == customer
    assert read.headers["etag"] == '"1"'
    assert read.headers["x-request-id"]


async def test_update_requires_and_checks_version(fx_api: Any, fx_headers: dict[str, str],
                                                  fx_customer: dict[str, Any]) -> None:
    url = f"/api/v1/customers/{fx_customer['id']}"
    missing = await fx_api.client.patch(url, json={"tier": "B"}, headers=fx_headers)
    assert missing.status_code == 428
    assert missing.headers["content-type"].startswith("application/problem+json")

    updated = await fx_api.client.patch(url, json={"tier": "B", "lifecycle_stage": "prospect"},
                                        headers={**fx_headers, "If-Match": '"1"'})
    assert updated.status_code == 200, updated.text
    assert updated.json()["tier"] == "B"
    assert updated.json()["version"] == 2

    stale = await fx_api.client.patch(url, json={"tier": "C", "version": 1}, headers=fx_headers)
    assert stale.status_code == 409
    assert stale.json()["current_version"] == 2
    assert (await fx_api.client.get(url, headers=fx_headers)).json()["tier"] == "B"

    by_body = await fx_api.client.patch(url, json={"tier": "C", "version": 2}, headers=fx_headers)
    assert by_body.status_code == 200
    assert by_body.json()["version"] == 3


async def test_lifecycle_transition_rules(fx_api: Any, fx_headers: dict[str, str],
                                          fx_customer: dict[str, Any]) -> None:
    url = f"/api/v1/customers/{fx_customer['id']}"
    illegal = await fx_api.client.patch(url, json={"lifecycle_stage": "churned", "version": 1}, headers=fx_headers)
    assert illegal.status_code == 422
    assert illegal.json()["field"] == "lifecycle_stage"
    ok = await fx_api.client.patch(url, json={"lifecycle_stage": "customer", "version": 1}, headers=fx_headers)
    assert ok.status_code == 200
    churn = await fx_api.client.patch(url, json={"lifecycle_stage": "churned", "version": 2}, headers=fx_headers)
    assert churn.status_code == 200


async def test_list_filters_sort_and_cursor(fx_api: Any) -> None:
    headers = await fx_api.login(["sales_rep"])
    region = f"region-{uuid.uuid4().hex[:8]}"
    names = [f"Zeta {i:02d}" for i in range(7)]
    for index, name in enumerate(names):
        response = await fx_api.client.post("/api/v1/customers", headers=headers, json={
            "name": name, "kind": "company", "region": region, "tier": "A" if index % 2 else "B"})
        assert response.status_code == 201

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"region": region, "sort": "name", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await fx_api.client.get("/api/v1/customers", params=params, headers=headers)
        assert page.status_code == 200, page.text
        seen += [item["name"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(names)

    descending = await fx_api.client.get("/api/v1/customers", params={"region": region, "sort": "-name"},
                                         headers=headers)
    assert [item["name"] for item in descending.json()["items"]] == sorted(names, reverse=True)

    tier_a = await fx_api.client.get("/api/v1/customers", params={"region": region, "tier": "A"}, headers=headers)
    assert {item["name"] for item in tier_a.json()["items"]} == {names[i] for i in (1, 3, 5)}


async def test_a_kept_list_statement_answers_each_filter_value_and_page_with_its_own_rows(fx_api: Any) -> None:
    """List statements are kept per shape (filters, sort, keyset), their values passed as parameters: the same
    statement must answer another region, tier or page with that one's rows, never an earlier request's."""
    from server.domain import repository

    headers = await fx_api.login(["sales_rep"])
    regions = {f"region-{uuid.uuid4().hex[:8]}": [f"Kept {letter}{i}" for i in range(3)] for letter in "AB"}
    for region, names in regions.items():
        for name in names:
            assert (await fx_api.client.post("/api/v1/customers", headers=headers, json={
                "name": name, "kind": "company", "region": region})).status_code == 201
    first, second = regions
    params = {"region": first, "sort": "name", "limit": 2}
    assert [item["name"] for item in (await fx_api.client.get(
        "/api/v1/customers", params=params, headers=headers)).json()["items"]] == regions[first][:2]
    kept = len(repository._PAGE_STATEMENTS)
    answer = (await fx_api.client.get("/api/v1/customers", params={**params, "region": second},
                                      headers=headers)).json()
    assert [item["name"] for item in answer["items"]] == regions[second][:2]
    assert len(repository._PAGE_STATEMENTS) == kept  # the same shape: the same statement
    following = (await fx_api.client.get("/api/v1/customers", headers=headers, params={
        **params, "region": second, "cursor": answer["next_cursor"]})).json()
    assert [item["name"] for item in following["items"]] == regions[second][2:]


async def test_delete_with_and_without_dependents(fx_api: Any, fx_headers: dict[str, str],
                                                  fx_customer: dict[str, Any]) -> None:
    url = f"/api/v1/customers/{fx_customer['id']}"
    opportunity = await fx_api.client.post("/api/v1/opportunities", headers=fx_headers, json={
        "customer_id": fx_customer["id"], "title": "Dependent", "amount": "1", "currency": "EUR"})
    assert opportunity.status_code == 201
    blocked = await fx_api.client.delete(url, headers=fx_headers)
    assert blocked.status_code == 409
    assert blocked.json()["dependents"] == ["opportunities"]

    removed = await fx_api.client.delete(f"/api/v1/opportunities/{opportunity.json()['id']}", headers=fx_headers)
    assert removed.status_code == 204
    stale = await fx_api.client.delete(url, headers={**fx_headers, "If-Match": '"9"'})
    assert stale.status_code == 409
    assert (await fx_api.client.delete(url, headers=fx_headers)).status_code == 204
    assert (await fx_api.client.get(url, headers=fx_headers)).status_code == 404


async def test_owner_must_exist(fx_api: Any, fx_headers: dict[str, str]) -> None:
    response = await fx_api.client.post("/api/v1/customers", headers=fx_headers, json={
        "name": "Orphan", "kind": "company", "owner_id": str(uuid.uuid4())})
    assert response.status_code == 422
    assert response.json()["field"] == "owner_id"
