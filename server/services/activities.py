"""Activity use cases."""

from __future__ import annotations

from typing import Any

from server.domain.activities import ACTIVITY, Activity
from server.errors import InvalidInput
from server.security.identity import User
from server.services.customers import CustomerService
from server.services.records import RecordService, require_reference, set_fields


def _links() -> dict[str, type[RecordService[Any]]]:
    from server.services.contacts import ContactService
    from server.services.opportunities import OpportunityService
    from server.services.service_records import ServiceRecordService

    return {"contact_id": ContactService, "opportunity_id": OpportunityService,
            "service_record_id": ServiceRecordService}


class ActivityService(RecordService[Activity]):
    """Record what happened with a customer."""

    entity = ACTIVITY
    model = Activity

    async def build(self, values: dict[str, Any]) -> Activity:
        await self.reference(CustomerService, values["customer_id"], "customer_id")
        owner_id = values.get("owner_id") or self.principal.user_id
        if owner_id is None:
            raise InvalidInput("owner_id is required", field="owner_id")
        await require_reference(self.session, User, owner_id, "owner_id")
        await self._check_links(values, values["customer_id"])
        record = Activity()
        set_fields(record, {**values, "owner_id": owner_id})
        return record

    async def change(self, record: Activity, changes: dict[str, Any]) -> None:
        if "owner_id" in changes:
            await require_reference(self.session, User, changes["owner_id"], "owner_id")
        await self._check_links(changes, record.customer_id)
        set_fields(record, changes)

    async def _check_links(self, values: dict[str, Any], customer_id: Any) -> None:
        """Every linked record must exist and belong to the same customer."""
        for field, service_type in _links().items():
            linked_id = values.get(field)
            if linked_id is None:
                continue
            linked = await self.reference(service_type, linked_id, field)
            if linked.customer_id != customer_id:
                raise InvalidInput(f"{field} belongs to another customer", field=field)
