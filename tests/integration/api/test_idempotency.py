"""Idempotency-Key: a retried POST creates once and answers the same; a reused key with another body is 409."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any


async def test_retry_returns_first_answer(fx_api: Any) -> None:
    headers = await fx_api.login(["sales_rep"])
    key = f"retry-{uuid.uuid4()}"
    region = f"idem-{uuid.uuid4().hex[:8]}"
    body = {"name": "Once Only", "kind": "company", "region": region}
    first = await fx_api.client.post("/api/v1/customers", json=body, headers={**headers, "Idempotency-Key": key})
    second = await fx_api.client.post("/api/v1/customers", json=body, headers={**headers, "Idempotency-Key": key})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    listed = await fx_api.client.get("/api/v1/customers", params={"region": region}, headers=headers)
    assert len(listed.json()["items"]) == 1

    other = await fx_api.client.post("/api/v1/customers", json={**body, "name": "Different"},
                                     headers={**headers, "Idempotency-Key": key})
    assert other.status_code == 409


async def test_keys_are_per_principal(fx_api: Any) -> None:
    alice, bob = await fx_api.login(["sales_rep"]), await fx_api.login(["sales_rep"])
    key = f"shared-{uuid.uuid4()}"
    body = {"name": "Same key", "kind": "company"}
    a = await fx_api.client.post("/api/v1/customers", json=body, headers={**alice, "Idempotency-Key": key})
    b = await fx_api.client.post("/api/v1/customers", json=body, headers={**bob, "Idempotency-Key": key})
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


async def test_concurrent_retries_create_once(fx_api: Any) -> None:
    headers = await fx_api.login(["sales_rep"])
    key = f"race-{uuid.uuid4()}"
    region = f"race-{uuid.uuid4().hex[:8]}"
    body = {"name": "Raced", "kind": "company", "region": region}
    responses = await asyncio.gather(*[
        fx_api.client.post("/api/v1/customers", json=body, headers={**headers, "Idempotency-Key": key})
        for _ in range(5)])
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    listed = await fx_api.client.get("/api/v1/customers", params={"region": region}, headers=headers)
    assert len(listed.json()["items"]) == 1
