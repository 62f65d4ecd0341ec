"""Customer use cases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from server.domain.activities import Activity
from server.domain.contacts import Contact
from server.domain.customers import CUSTOMER, Customer, LifecycleStage, check_lifecycle_change
from server.domain.opportunities import Opportunity
from server.domain.service_records import ServiceRecord
from server.errors import InvalidInput
from server.security.identity import User
from server.services.records import RecordService, refuse_if_dependents, require_reference, set_fields


class CustomerService(RecordService[Customer]):
    """Create, read, change and delete customers."""

    entity = CUSTOMER
    model = Customer

    async def build(self, values: dict[str, Any]) -> Customer:
        owner_id = values.get("owner_id") or self.principal.user_id
        if owner_id is None:
            raise InvalidInput("owner_id is required", field="owner_id")
        await require_reference(self.session, User, owner_id, "owner_id")
        record = Customer(lifecycle_stage=LifecycleStage.LEAD.value, tags=[])
        set_fields(record, {**values, "owner_id": owner_id, "tags": _unique(values.get("tags") or [])})
        return record

    async def change(self, record: Customer, changes: dict[str, Any]) -> None:
        if "lifecycle_stage" in changes:
            check_lifecycle_change(record.lifecycle_stage, changes["lifecycle_stage"])
        if "owner_id" in changes:
            if changes["owner_id"] is None:
                raise InvalidInput("owner_id cannot be removed", field="owner_id")
            await require_reference(self.session, User, changes["owner_id"], "owner_id")
        if "tags" in changes:
            changes["tags"] = _unique(changes["tags"] or [])
        set_fields(record, changes)

    async def check_delete(self, record: Customer) -> None:
        await refuse_if_dependents(self.session, "customer", {
            noun: select(func.count()).select_from(model).where(model.customer_id == record.id)
            for noun, model in (("contacts", Contact), ("opportunities", Opportunity),
                                ("service records", ServiceRecord), ("activities", Activity))
        })


def _unique(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tag.strip() for tag in tags if tag.strip()))
