"""Activity endpoints: /api/v1/activities."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from server.api.crud import record_controller
from server.api.schemas import UNSET, AwareDatetime, Input, LongText, Unset, Version
from server.domain.activities import ACTIVITY, ActivityKind
from server.services.activities import ActivityService

Summary = LongText


class ActivityCreate(Input):
    customer_id: uuid.UUID
    kind: ActivityKind
    occurred_at: AwareDatetime
    summary: Summary
    contact_id: uuid.UUID | None = None
    opportunity_id: uuid.UUID | None = None
    service_record_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None


class ActivityUpdate(Input):
    kind: ActivityKind | Unset = UNSET
    occurred_at: AwareDatetime | Unset = UNSET
    summary: Summary | Unset = UNSET
    contact_id: uuid.UUID | Unset | None = UNSET
    opportunity_id: uuid.UUID | Unset | None = UNSET
    service_record_id: uuid.UUID | Unset | None = UNSET
    owner_id: uuid.UUID | Unset = UNSET
    version: Version | Unset = UNSET


class ActivityRead(msgspec.Struct, kw_only=True):
    """An activity. Hidden fields are absent."""

    id: uuid.UUID
    version: int
    created_at: datetime
    updated_at: datetime
    customer_id: uuid.UUID | Unset = UNSET
    contact_id: uuid.UUID | Unset | None = UNSET
    opportunity_id: uuid.UUID | Unset | None = UNSET
    service_record_id: uuid.UUID | Unset | None = UNSET
    kind: str | Unset = UNSET
    occurred_at: AwareDatetime | Unset = UNSET
    owner_id: uuid.UUID | Unset = UNSET
    summary: str | Unset = UNSET


ActivityController = record_controller(
    path="/api/v1/activities", tag="activities", entity=ACTIVITY, service_type=ActivityService,
    create_schema=ActivityCreate, update_schema=ActivityUpdate, read_schema=ActivityRead,
)
