"""Every role x entity x field x (read, write), over HTTP, against the seeded policy.

For each role, a complete set of records owned by a user holding that role is written straight to the
database; then that user reads them through get, list, the 360 view and export, and tries to PATCH every
field. Expectations come from compiling the seeded default policy, so the test checks the enforcement
path (SQL scopes, projection, write checks) against the matrix that docs/security.md publishes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from server.api.activities import ActivityUpdate
from server.api.contacts import ContactUpdate
from server.api.customers import CustomerUpdate
from server.api.opportunities import OpportunityUpdate
from server.api.service_records import ServiceRecordUpdate
from server.domain.activities import ACTIVITY, Activity
from server.domain.contacts import CONTACT, Contact
from server.domain.customers import CUSTOMER, Customer
from server.domain.fields import EntitySpec
from server.domain.opportunities import OPPORTUNITY, Opportunity
from server.domain.service_records import SERVICE_RECORD, ServiceRecord
from server.security.policy import (
    DEFAULT_POLICY,
    DEFAULT_ROLES,
    DEFAULT_SCOPES,
    FieldMask,
    Visibility,
    build_enforcer,
    compile_field_mask,
    render_mask,
)
from server.services.records import render_decimal

ROLES = sorted(DEFAULT_ROLES)
ENTITIES: list[tuple[EntitySpec, str, type[msgspec.Struct]]] = [
    (CUSTOMER, "customers", CustomerUpdate), (CONTACT, "contacts", ContactUpdate),
    (OPPORTUNITY, "opportunities", OpportunityUpdate), (SERVICE_RECORD, "service-records", ServiceRecordUpdate),
    (ACTIVITY, "activities", ActivityUpdate),
]
ENFORCER = build_enforcer(DEFAULT_POLICY)


def expected_mask(role: str, entity: EntitySpec) -> FieldMask:
    return compile_field_mask(ENFORCER, (role,), entity, DEFAULT_SCOPES)


def wire(value: Any) -> Any:
    """A model value as the API renders it in JSON."""
    if isinstance(value, Decimal):
        return render_decimal(value)
    if isinstance(value, datetime):
        return msgspec.json.decode(msgspec.json.encode(value))
    if isinstance(value, date | uuid.UUID):
        return str(value)
    return value


def expected_view(role: str, entity: EntitySpec, record: Any) -> dict[str, Any]:
    mask = expected_mask(role, entity)
    view: dict[str, Any] = {}
    for spec in entity.fields:
        visibility = mask.visibility[spec.name]
        raw = getattr(record, spec.name)
        if visibility is Visibility.CLEAR:
            view[spec.name] = wire(raw)
        elif visibility is Visibility.MASKED:
            view[spec.name] = None if raw is None else render_mask(spec.mask, wire(raw))
    return view


async def _world(fx_api: Any, owner_id: uuid.UUID) -> dict[str, Any]:
    """One record of every entity, every field filled, owned by ``owner_id``."""
    now = datetime.now(UTC).replace(microsecond=0)
    customer = Customer(name="林小明", kind="individual", industry="healthcare", region="East China", tier="A",
                        lifecycle_stage="customer", source_channel="referral", owner_id=owner_id,
                        tax_id="91310000MA1FL0XX3K", tags=["vip"], notes="Prefers calls after 6pm; diabetic.")
    contact = Contact(customer_id=customer.id, name="林小明", title="Owner", phone="+86 138 0013 8000",
                      mobile="13912345678", email="lin.xiaoming@example.com", address="上海市浦东新区世纪大道100号",
                      national_id="110101199003076217", marketing_consent=True, consent_at=now,
                      consent_source="web form")
    opportunity = Opportunity(customer_id=customer.id, title="Home care plan", amount=Decimal("18000.5000"),
                              currency="CNY", stage="proposal", probability=50,
                              expected_close_date=date(2027, 1, 15), owner_id=owner_id, loss_reason=None)
    service = ServiceRecord(customer_id=customer.id, contact_id=contact.id, type="complaint", priority="high",
                            status="open", owner_id=owner_id, description="Insulin pump alarm at night",
                            resolution=None, satisfaction=None, first_response_due=now + timedelta(hours=4),
                            resolution_due=now + timedelta(hours=24))
    activity = Activity(customer_id=customer.id, contact_id=contact.id, opportunity_id=opportunity.id,
                        service_record_id=service.id, kind="call", occurred_at=now - timedelta(days=1),
                        owner_id=owner_id, summary="Discussed renewal and pump issue")
    async with fx_api.session_factory() as session, session.begin():
        session.add(customer)
        await session.flush()
        session.add(contact)
        await session.flush()
        session.add_all([opportunity, service])
        await session.flush()
        session.add(activity)
    return {"customer": customer, "contact": contact, "opportunity": opportunity, "service_record": service,
            "activity": activity}


@pytest.fixture(scope="session", name="fx_role_worlds")
async def fx_role_worlds(fx_api: Any, fx_unit: str) -> dict[str, tuple[dict[str, str], dict[str, Any]]]:
    worlds = {}
    for role in ROLES:
        # In a unit, so that unit-scoped roles see their own records as every other scope does.
        username = await fx_api.create_user([role], unit=fx_unit)
        headers = {"Authorization": f"Bearer {await fx_api.token_for(username)}"}
        worlds[role] = (headers, await _world(fx_api, await fx_api.user_id(username)))
    return worlds


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("entity", "collection", "_update"), ENTITIES, ids=[e[1] for e in ENTITIES])
async def test_read_paths_follow_the_matrix(fx_api: Any, fx_role_worlds: Any, role: str, entity: EntitySpec,
                                            collection: str, _update: Any) -> None:
    headers, world = fx_role_worlds[role]
    record = world[entity.name]
    mask = expected_mask(role, entity)
    single = await fx_api.client.get(f"/api/v1/{collection}/{record.id}", headers=headers)
    listed = await fx_api.client.get(f"/api/v1/{collection}", params={"limit": 200}, headers=headers)
    exported = await fx_api.client.get(f"/api/v1/{collection}/export", headers=headers)
    if not mask.can("read"):
        assert single.status_code == 403, single.text
    else:
        assert single.status_code == 200, single.text
        assert single.json() == expected_view(role, entity, record)
    if not mask.can("list"):
        assert listed.status_code == 403
    else:
        assert listed.status_code == 200, listed.text
        matches = [item for item in listed.json()["items"] if item["id"] == str(record.id)]
        if matches or listed.json()["next_cursor"] is None:
            assert matches == [expected_view(role, entity, record)]
    if not mask.can("export"):
        assert exported.status_code == 403
    else:
        assert exported.status_code == 200
        lines = [msgspec.json.decode(line) for line in exported.content.splitlines()]
        assert [line for line in lines if line["id"] == str(record.id)] == [expected_view(role, entity, record)]


@pytest.mark.parametrize("role", ROLES)
async def test_customer_360_follows_the_matrix(fx_api: Any, fx_role_worlds: Any, role: str) -> None:
    headers, world = fx_role_worlds[role]
    response = await fx_api.client.get(f"/api/v1/customers/{world['customer'].id}/360", headers=headers)
    if not expected_mask(role, CUSTOMER).can("read"):
        assert response.status_code == 403
        return
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["customer"] == expected_view(role, CUSTOMER, world["customer"])
    for section, entity, key in (("contacts", CONTACT, "contact"), ("open_opportunities", OPPORTUNITY, "opportunity"),
                                 ("recent_service_records", SERVICE_RECORD, "service_record")):
        if expected_mask(role, entity).can("read"):
            assert view[section] == [expected_view(role, entity, world[key])]
        else:
            assert section not in view


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("entity", "collection", "update_schema"), ENTITIES, ids=[e[1] for e in ENTITIES])
async def test_writes_follow_the_matrix(fx_api: Any, fx_role_worlds: Any, role: str, entity: EntitySpec,
                                        collection: str, update_schema: type[msgspec.Struct]) -> None:
    headers, world = fx_role_worlds[role]
    record = world[entity.name]
    mask = expected_mask(role, entity)
    url = f"/api/v1/{collection}/{record.id}"
    version = 1
    for spec in entity.fields:
        if spec.name == "version":
            continue  # the precondition of every PATCH, not a field anyone writes
        body = {spec.name: wire(getattr(record, spec.name)), "version": version}
        response = await fx_api.client.patch(url, json=body, headers=headers)
        if spec.name not in update_schema.__struct_fields__:
            assert response.status_code == 422, (spec.name, response.text)
        elif not (mask.can("update") and spec.name in mask.writable):
            assert response.status_code == 403, (spec.name, response.text)
            if mask.can("update"):
                assert response.json()["fields"] == [spec.name]
        else:
            assert response.status_code == 200, (spec.name, response.text)
            version = response.json()["version"]
