""""Everything about customer X" pages exactly, whichever way events name the customer, on both databases.

An event is about a customer when it is the event's subject, when the customer is the record the event is about,
or when a list or export names it among several subjects. The query takes the first page from each of the three
and merges them; each part stops after a page, so every other filter must already hold inside each part. These
events name one customer all three ways, more than a page each, interleaved with each other and with events about
other customers, under filters that hold for only some of them.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any
from unittest import mock

import pytest

from server.audit import store, trail
from server.audit.sealer import chain_now
from server.audit.tags import ActorType, AuditAction
from server.db import write_transaction

CUSTOMER = str(uuid.uuid4())
OTHER = str(uuid.uuid4())
ACTOR = trail.AuditActor(ActorType.SYSTEM, "customer-query-test", "customer query test")


def _plan() -> list[tuple[str, dict[str, Any]]]:
    """(label, event details) in chain order: 3 x 12 events about the customer, 12 about another one."""
    plan: list[tuple[str, dict[str, Any]]] = []
    for number in range(12):
        action = AuditAction.READ if number % 3 else AuditAction.UPDATE
        fields = ["phone"] if number % 2 else ["tier"]
        plan += [
            (f"own-{number}", {"subject_id": CUSTOMER, "entity_id": str(uuid.uuid4()), "action": action,
                               "fields": fields}),
            (f"record-{number}", {"entity_id": CUSTOMER, "action": action, "fields": fields}),
            (f"other-{number}", {"subject_id": OTHER, "entity_id": str(uuid.uuid4()), "action": action,
                                 "subjects": [OTHER, str(uuid.uuid4())], "fields": fields}),
            (f"listed-{number}", {"subject_id": None, "subjects": [OTHER, CUSTOMER], "action": AuditAction.READ
                                  if number % 4 else AuditAction.EXPORT, "fields": fields}),
        ]
    return plan


PLAN = _plan()


def _expected(**details: Any) -> list[str]:
    """Labels about the customer matching ``details``, newest first."""
    return [label for label, event in reversed(PLAN)
            if CUSTOMER in (event.get("subject_id"), event.get("entity_id"), *event.get("subjects", ()))
            and all((value in event["fields"]) if key == "field" else event.get(key) == value
                    for key, value in details.items())]


@pytest.fixture(scope="session", name="fx_auditor")
async def fx_auditor(fx_api: Any) -> dict[str, str]:
    return await fx_api.login(["auditor"])


@pytest.fixture(scope="session", name="fx_customer_entity")
async def fx_customer_entity(fx_api: Any) -> str:
    """Chain :data:`PLAN` once per backend, each event's label as its reason; the entity name the events carry
    (the filter that leaves out the auditor's own queries, which are about the customer too)."""
    entity = f"customer-query-{uuid.uuid4().hex[:8]}"
    rows = [trail.pending_event(actor=ACTOR, entity=entity, reason=label, **details) for label, details in PLAN]
    async with fx_api.session_factory() as session, write_transaction(session):
        await chain_now(session, rows)
    return entity


async def _pages(fx_api: Any, auditor: dict[str, str], limit: int, **filters: Any) -> list[str]:
    labels: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        params = {"limit": limit, **filters, **({"cursor": cursor} if cursor else {})}
        response = await fx_api.client.get("/api/v1/audit/events", params=params, headers=auditor)
        assert response.status_code == 200, response.text
        labels += [item["reason"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return labels
    raise AssertionError("the pages never ended")


@pytest.mark.parametrize(
    "filters",
    [{}, {"action": "read"}, {"action": "update"}, {"field": "phone"}, {"action": "read", "field": "tier"},
     {"action": "export"}, {"action": "delete"}],
    ids=lambda filters: "-".join(f"{key}={value}" for key, value in filters.items()) or "customer-only",
)
@pytest.mark.parametrize("limit", [1, 5, 100])
async def test_pages_hold_exactly_the_customers_events(fx_api: Any, fx_auditor: dict[str, str],
                                                       fx_customer_entity: str, filters: dict[str, str],
                                                       limit: int) -> None:
    labels = await _pages(fx_api, fx_auditor, limit, customer_id=CUSTOMER, entity=fx_customer_entity, **filters)
    assert labels == _expected(**filters)


@pytest.mark.parametrize("filters", [{}, {"action": "read", "field": "phone"}], ids=["customer-only", "read-phone"])
async def test_an_export_in_small_batches_holds_exactly_the_customers_events(
        fx_api: Any, fx_auditor: dict[str, str], fx_customer_entity: str, filters: dict[str, str]) -> None:
    with mock.patch.object(store, "BATCH", 4):  # oldest first, a few events a batch: the same merge, other order
        response = await fx_api.client.get("/api/v1/audit/export", headers=fx_auditor,
                                           params={"customer_id": CUSTOMER, "entity": fx_customer_entity, **filters})
    assert response.status_code == 200, response.text
    lines = [json.loads(line) for line in response.text.splitlines()]
    events = [json.loads(base64.b64decode(line["canonical"])) for line in lines if line["type"] == "event"]
    assert [event["reason"] for event in events] == _expected(**filters)[::-1]
