"""Service record endpoints: /api/v1/service-records."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from server.api.crud import record_controller
from server.api.schemas import UNSET, Input, LongText, Satisfaction, Unset, Version
from server.domain.service_records import SERVICE_RECORD, Priority, ServiceStatus, ServiceType
from server.services.service_records import ServiceRecordService

Description = LongText


class ServiceRecordCreate(Input):
    customer_id: uuid.UUID
    type: ServiceType
    priority: Priority
    description: Description
    contact_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None


class ServiceRecordUpdate(Input):
    contact_id: uuid.UUID | Unset | None = UNSET
    type: ServiceType | Unset = UNSET
    priority: Priority | Unset = UNSET
    status: ServiceStatus | Unset = UNSET
    owner_id: uuid.UUID | Unset = UNSET
    description: Description | Unset = UNSET
    resolution: LongText | Unset | None = UNSET
    satisfaction: Satisfaction | Unset | None = UNSET
    version: Version | Unset = UNSET


class ServiceRecordRead(msgspec.Struct, kw_only=True):
    """A service record with its SLA due times. Hidden fields are absent."""

    id: uuid.UUID
    version: int
    created_at: datetime
    updated_at: datetime
    customer_id: uuid.UUID | Unset = UNSET
    contact_id: uuid.UUID | Unset | None = UNSET
    type: str | Unset = UNSET
    priority: str | Unset = UNSET
    status: str | Unset = UNSET
    owner_id: uuid.UUID | Unset = UNSET
    description: str | Unset = UNSET
    resolution: str | Unset | None = UNSET
    satisfaction: int | Unset | None = UNSET
    first_response_due: datetime | Unset = UNSET
    resolution_due: datetime | Unset = UNSET
    first_responded_at: datetime | Unset | None = UNSET
    resolved_at: datetime | Unset | None = UNSET
    closed_at: datetime | Unset | None = UNSET


ServiceRecordController = record_controller(
    path="/api/v1/service-records", tag="service records", entity=SERVICE_RECORD,
    service_type=ServiceRecordService, create_schema=ServiceRecordCreate, update_schema=ServiceRecordUpdate,
    read_schema=ServiceRecordRead,
)
