"""Service record use cases: SLA due times on open, validated status flow."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from server.domain.activities import Activity
from server.domain.base import utc_now
from server.domain.contacts import Contact
from server.domain.service_records import SERVICE_RECORD, ServiceRecord, ServiceStatus, apply_status_change, due_times
from server.domain.service_records.rules import check_satisfaction
from server.errors import InvalidInput
from server.security.identity import User
from server.services.contacts import ContactService
from server.services.customers import CustomerService
from server.services.records import RecordService, refuse_if_dependents, require_reference, set_fields


class ServiceRecordService(RecordService[ServiceRecord]):
    """Open, work, resolve and close service records."""

    entity = SERVICE_RECORD
    model = ServiceRecord

    async def build(self, values: dict[str, Any]) -> ServiceRecord:
        await self.reference(CustomerService, values["customer_id"], "customer_id")
        await self._check_contact(values.get("contact_id"), values["customer_id"])
        owner_id = values.get("owner_id") or self.principal.user_id
        if owner_id is None:
            raise InvalidInput("owner_id is required", field="owner_id")
        await require_reference(self.session, User, owner_id, "owner_id")
        opened_at = utc_now()
        first_response_due, resolution_due = due_times(values["priority"], opened_at)
        record = ServiceRecord(status=ServiceStatus.OPEN.value, created_at=opened_at,
                               first_response_due=first_response_due, resolution_due=resolution_due)
        set_fields(record, {**values, "owner_id": owner_id})
        check_satisfaction(record)
        return record

    async def change(self, record: ServiceRecord, changes: dict[str, Any]) -> None:
        if "contact_id" in changes:
            await self._check_contact(changes["contact_id"], record.customer_id)
        if "owner_id" in changes:
            await require_reference(self.session, User, changes["owner_id"], "owner_id")
        target_status = changes.pop("status", None)
        set_fields(record, changes)
        if "priority" in changes:
            # Due times always follow the current priority, measured from when the record was opened.
            record.first_response_due, record.resolution_due = due_times(record.priority, record.created_at)
        if target_status is not None:
            apply_status_change(record, target_status, utc_now())
        check_satisfaction(record)

    async def check_delete(self, record: ServiceRecord) -> None:
        await refuse_if_dependents(self.session, "service record", {
            "activities": select(func.count()).select_from(Activity).where(Activity.service_record_id == record.id),
        })

    async def _check_contact(self, contact_id: Any, customer_id: Any) -> None:
        if contact_id is None:
            return
        contact: Contact = await self.reference(ContactService, contact_id, "contact_id")
        if contact.customer_id != customer_id:
            raise InvalidInput("contact_id belongs to another customer", field="contact_id")
