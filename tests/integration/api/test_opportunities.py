"""Opportunities: Decimal amounts, pipeline rules, stage history, reopen."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from server.domain.opportunities import StageChange


async def _opportunity(fx_api: Any, headers: dict[str, str], customer_id: str, **extra: Any) -> dict[str, Any]:
    body = {"customer_id": customer_id, "title": "Line upgrade", "amount": "1200.50", "currency": "EUR", **extra}
    response = await fx_api.client.post("/api/v1/opportunities", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _history(fx_api: Any, opportunity_id: str) -> list[tuple[str | None, str]]:
    import uuid

    async with fx_api.session_factory() as session:
        rows = (await session.execute(select(StageChange).where(
            StageChange.opportunity_id == uuid.UUID(opportunity_id)).order_by(StageChange.changed_at))).scalars()
        return [(row.from_stage, row.to_stage) for row in rows]


async def test_amount_is_exact_decimal(fx_api: Any, fx_headers: dict[str, str], fx_customer: dict[str, Any]) -> None:
    created = await _opportunity(fx_api, fx_headers, fx_customer["id"], amount="0.1")
    assert created["amount"] == "0.10"
    big = await _opportunity(fx_api, fx_headers, fx_customer["id"], amount="99999999999.9999")
    read = await fx_api.client.get(f"/api/v1/opportunities/{big['id']}", headers=fx_headers)
    assert read.json()["amount"] == "99999999999.9999"
    assert created["probability"] == 10
    assert created["stage"] == "qualification"


async def test_pipeline_history_terminal_and_reopen(fx_api: Any, fx_headers: dict[str, str],
                                                    fx_customer: dict[str, Any]) -> None:
    opportunity = await _opportunity(fx_api, fx_headers, fx_customer["id"])
    url = f"/api/v1/opportunities/{opportunity['id']}"

    moved = await fx_api.client.patch(url, headers=fx_headers, json={"stage": "proposal", "version": 1})
    assert moved.status_code == 200
    assert moved.json()["probability"] == 50

    no_reason = await fx_api.client.patch(url, headers=fx_headers, json={"stage": "lost", "version": 2})
    assert no_reason.status_code == 422
    assert no_reason.json()["field"] == "loss_reason"

    lost = await fx_api.client.patch(url, headers=fx_headers,
                                     json={"stage": "lost", "loss_reason": "price", "version": 2})
    assert lost.status_code == 200
    assert lost.json()["closed_at"] is not None

    terminal = await fx_api.client.patch(url, headers=fx_headers, json={"stage": "negotiation", "version": 3})
    assert terminal.status_code == 422
    edit_closed = await fx_api.client.patch(url, headers=fx_headers, json={"title": "x", "version": 3})
    assert edit_closed.status_code == 422

    reopened = await fx_api.client.post(f"{url}/reopen", headers=fx_headers,
                                        json={"stage": "negotiation", "reason": "customer came back", "version": 3})
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["stage"] == "negotiation"
    assert reopened.json()["loss_reason"] is None
    assert reopened.json()["closed_at"] is None

    reopen_open = await fx_api.client.post(f"{url}/reopen", headers=fx_headers,
                                           json={"stage": "proposal", "reason": "again", "version": 4})
    assert reopen_open.status_code == 422

    assert await _history(fx_api, opportunity["id"]) == [
        (None, "qualification"), ("qualification", "proposal"), ("proposal", "lost"), ("lost", "negotiation")]


async def test_created_lost_needs_reason(fx_api: Any, fx_headers: dict[str, str], fx_customer: dict[str, Any]) -> None:
    response = await fx_api.client.post("/api/v1/opportunities", headers=fx_headers, json={
        "customer_id": fx_customer["id"], "title": "t", "amount": 5, "currency": "CNY", "stage": "lost"})
    assert response.status_code == 422
    assert response.json()["field"] == "loss_reason"


async def test_negative_amount_rejected(fx_api: Any, fx_headers: dict[str, str], fx_customer: dict[str, Any]) -> None:
    response = await fx_api.client.post("/api/v1/opportunities", headers=fx_headers, json={
        "customer_id": fx_customer["id"], "title": "t", "amount": "-1", "currency": "CNY"})
    assert response.status_code == 422
    assert response.json()["field"] == "amount"


async def test_sort_by_amount_across_pages(fx_api: Any) -> None:
    headers = await fx_api.login(["sales_rep"])
    customer = (await fx_api.client.post("/api/v1/customers", headers=headers,
                                         json={"name": "Sorter", "kind": "company"})).json()
    amounts = ["10.00", "2.50", "300.00", "2.50", "99.99"]
    for amount in amounts:
        await _opportunity(fx_api, headers, customer["id"], amount=amount)
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"customer_id": customer["id"], "sort": "-amount", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await fx_api.client.get("/api/v1/opportunities", params=params, headers=headers)).json()
        seen += [item["amount"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["300.00", "99.99", "10.00", "2.50", "2.50"]
