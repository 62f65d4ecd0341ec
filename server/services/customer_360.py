"""Customer 360: the customer with contacts, open opportunities, recent service and one merged timeline."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from server.audit.tags import AuditAction
from server.db import read_transaction
from server.domain.activities import Activity
from server.domain.contacts import Contact
from server.domain.opportunities import OPEN_STAGES, Opportunity, StageChange
from server.domain.service_records import ServiceRecord
from server.services.activities import ActivityService
from server.services.contacts import ContactService
from server.services.customers import CustomerService
from server.services.opportunities import OpportunityService
from server.services.records import CallContext
from server.services.service_records import ServiceRecordService

RECENT_SERVICE_RECORDS = 10
TIMELINE_LENGTH = 50


class Customer360Service:
    """Assembles the 360 view in one read transaction, each part projected by its own entity's service."""

    def __init__(self, context: CallContext) -> None:
        self.context = context
        self.session = context.session

    async def view(self, customer_id: uuid.UUID) -> dict[str, Any]:
        """Everything about one customer that the caller may see."""
        customers, contacts = CustomerService(self.context), ContactService(self.context)
        opportunities, service = OpportunityService(self.context), ServiceRecordService(self.context)
        activities = ActivityService(self.context)
        customers.require("read")
        async with read_transaction(self.session):
            customer = await customers.load(customer_id)
            contact_rows = await self._rows(select(Contact).where(Contact.customer_id == customer_id,
                                                                  *await contacts.scope()).order_by(Contact.name))
            open_rows = await self._rows(select(Opportunity).where(
                Opportunity.customer_id == customer_id, Opportunity.stage.in_([s.value for s in OPEN_STAGES]),
                *await opportunities.scope()).order_by(Opportunity.created_at.desc()))
            service_rows = await self._rows(select(ServiceRecord).where(
                ServiceRecord.customer_id == customer_id, *await service.scope(),
            ).order_by(ServiceRecord.created_at.desc()).limit(RECENT_SERVICE_RECORDS))
            activity_rows = await self._rows(select(Activity).where(
                Activity.customer_id == customer_id, *await activities.scope(),
            ).order_by(Activity.occurred_at.desc()).limit(TIMELINE_LENGTH))
            stage_rows = (await self.session.execute(
                select(StageChange, Opportunity.title).join(Opportunity, Opportunity.id == StageChange.opportunity_id)
                .where(Opportunity.customer_id == customer_id, *await opportunities.scope())
                .order_by(StageChange.changed_at.desc()).limit(TIMELINE_LENGTH)
            )).all()
            await customers.prepare([customer])
            await contacts.prepare(contact_rows)
            await opportunities.prepare(open_rows)
            await service.prepare(service_rows)
            view: dict[str, Any] = {"customer": customers.project(customer)}
            parts = (("contacts", contacts, contact_rows), ("open_opportunities", opportunities, open_rows),
                     ("recent_service_records", service, service_rows))
            for name, part_service, rows in parts:
                # A part the caller may not read is absent, as a hidden field is.
                if part_service.mask.can("read"):
                    view[name] = [part_service.project(row) for row in rows]
            view["timeline"] = _timeline(
                activity_rows if activities.mask.can("read") else [],
                service_rows if service.mask.can("read") else [],
                stage_rows if opportunities.mask.can("read") else [],
            )
        # The 360 view shows several records at once: the trail records which fields of which of them were seen.
        seen = {f"{part.entity.name}.{field}" for part, rows in ((customers, [customer]), (contacts, contact_rows),
                                                                  (opportunities, open_rows), (service, service_rows))
                if part.mask.can("read") and rows for field in part.seen_in_clear()}
        if seen:
            records = [str(customer.id)] + [str(row.id) for row in (*contact_rows, *open_rows, *service_rows)]
            await customers.record_alone(AuditAction.READ, customer, fields=sorted(seen),
                                         after={"view": "360", "records": records})
        return view

    async def _rows(self, statement: Any) -> list[Any]:
        return list((await self.session.execute(statement)).scalars().all())


def _timeline(activities: list[Activity], service_records: list[ServiceRecord], stage_changes: Sequence[Any]) -> list[
        dict[str, Any]]:
    """Activities, service record openings/resolutions and stage changes, newest first."""
    entries: list[tuple[datetime, dict[str, Any]]] = []
    for activity in activities:
        entries.append((activity.occurred_at, {"at": activity.occurred_at, "type": f"activity.{activity.kind}",
                                               "entity": "activity", "entity_id": activity.id,
                                               "owner_id": activity.owner_id}))
    for record in service_records:
        entries.append((record.created_at, {"at": record.created_at, "type": f"service_record.opened.{record.type}",
                                            "entity": "service_record", "entity_id": record.id,
                                            "owner_id": record.owner_id}))
        if record.resolved_at is not None:
            entries.append((record.resolved_at, {"at": record.resolved_at, "type": "service_record.resolved",
                                                 "entity": "service_record", "entity_id": record.id,
                                                 "owner_id": record.owner_id}))
    for change, title in stage_changes:
        entries.append((change.changed_at, {"at": change.changed_at, "type": f"opportunity.stage.{change.to_stage}",
                                            "entity": "opportunity", "entity_id": change.opportunity_id,
                                            "title": title, "owner_id": change.changed_by}))
    entries.sort(key=lambda entry: entry[0], reverse=True)
    return [entry for _at, entry in entries[:TIMELINE_LENGTH]]
