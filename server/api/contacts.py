"""Contact endpoints: /api/v1/contacts."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from server.api.crud import record_controller
from server.api.schemas import UNSET, Input, LongText, Name, ShortText, Unset, Version
from server.domain.contacts import CONTACT
from server.services.contacts import ContactService

Phone = ShortText


class ContactCreate(Input):
    customer_id: uuid.UUID
    name: Name
    title: ShortText | None = None
    phone: Phone | None = None
    mobile: Phone | None = None
    email: ShortText | None = None
    address: LongText | None = None
    national_id: ShortText | None = None
    marketing_consent: bool = False
    consent_source: ShortText | None = None


class ContactUpdate(Input):
    customer_id: uuid.UUID | Unset = UNSET
    name: Name | Unset = UNSET
    title: ShortText | Unset | None = UNSET
    phone: Phone | Unset | None = UNSET
    mobile: Phone | Unset | None = UNSET
    email: ShortText | Unset | None = UNSET
    address: LongText | Unset | None = UNSET
    national_id: ShortText | Unset | None = UNSET
    marketing_consent: bool | Unset = UNSET
    consent_source: ShortText | Unset | None = UNSET
    version: Version | Unset = UNSET


class ContactRead(msgspec.Struct, kw_only=True):
    """A contact. Fields the caller may not see are absent; masked fields hold their masked text."""

    id: uuid.UUID
    version: int
    created_at: datetime
    updated_at: datetime
    customer_id: uuid.UUID | Unset = UNSET
    name: str | Unset = UNSET
    title: str | Unset | None = UNSET
    phone: str | Unset | None = UNSET
    mobile: str | Unset | None = UNSET
    email: str | Unset | None = UNSET
    address: str | Unset | None = UNSET
    national_id: str | Unset | None = UNSET
    marketing_consent: bool | Unset = UNSET
    consent_at: datetime | Unset | None = UNSET
    consent_source: str | Unset | None = UNSET


ContactController = record_controller(
    path="/api/v1/contacts", tag="contacts", entity=CONTACT, service_type=ContactService,
    create_schema=ContactCreate, update_schema=ContactUpdate, read_schema=ContactRead,
)
