"""Customer endpoints: /api/v1/customers and the 360 view."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from server.api.crud import record_controller
from server.api.schemas import UNSET, Input, LongText, Name, ShortText, Tag, Unset, Version
from server.domain.customers import CUSTOMER, CustomerKind, LifecycleStage, SourceChannel, Tier
from server.services.customer_360 import Customer360Service
from server.services.customers import CustomerService
from server.services.erasure import ErasureService
from server.services.records import CallContext


class CustomerCreate(Input):
    name: Name
    kind: CustomerKind
    industry: ShortText | None = None
    region: ShortText | None = None
    tier: Tier | None = None
    lifecycle_stage: LifecycleStage = LifecycleStage.LEAD
    source_channel: SourceChannel | None = None
    owner_id: uuid.UUID | None = None
    org_unit_id: uuid.UUID | None = None
    tax_id: ShortText | None = None
    tags: list[Tag] = msgspec.field(default_factory=list)
    notes: LongText | None = None


class CustomerUpdate(Input):
    name: Name | Unset = UNSET
    kind: CustomerKind | Unset = UNSET
    industry: ShortText | Unset | None = UNSET
    region: ShortText | Unset | None = UNSET
    tier: Tier | Unset | None = UNSET
    lifecycle_stage: LifecycleStage | Unset = UNSET
    source_channel: SourceChannel | Unset | None = UNSET
    owner_id: uuid.UUID | Unset = UNSET
    org_unit_id: uuid.UUID | Unset | None = UNSET
    tax_id: ShortText | Unset | None = UNSET
    tags: list[Tag] | Unset = UNSET
    notes: LongText | Unset | None = UNSET
    version: Version | Unset = UNSET


class CustomerRead(msgspec.Struct, kw_only=True):
    """A customer. Fields the caller may not see are absent; masked fields hold their masked text."""

    id: uuid.UUID
    version: int
    created_at: datetime
    updated_at: datetime
    name: str | Unset = UNSET
    kind: str | Unset = UNSET
    industry: str | Unset | None = UNSET
    region: str | Unset | None = UNSET
    tier: str | Unset | None = UNSET
    lifecycle_stage: str | Unset = UNSET
    source_channel: str | Unset | None = UNSET
    owner_id: uuid.UUID | Unset = UNSET
    org_unit_id: uuid.UUID | Unset | None = UNSET
    tax_id: str | Unset | None = UNSET
    tags: list[str] | Unset = UNSET
    notes: str | Unset | None = UNSET


CustomerController = record_controller(
    path="/api/v1/customers", tag="customers", entity=CUSTOMER, service_type=CustomerService,
    create_schema=CustomerCreate, update_schema=CustomerUpdate, read_schema=CustomerRead,
)


class Customer360Controller(Controller):
    path = "/api/v1/customers"
    tags = ["customers"]

    @get("/{customer_id:uuid}/360", summary="Customer 360",
         description="The customer with its contacts, open opportunities, recent service records and a merged "
                     "timeline of activities, service events and stage changes (newest first).")
    async def view(self, customer_id: FromPath[uuid.UUID],
                   context: NamedDependency[CallContext]) -> dict[str, Any]:
        return await Customer360Service(context).view(customer_id)


class Erasure(Input):
    legal_basis: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class CustomerErasureController(Controller):
    path = "/api/v1/customers"
    tags = ["customers"]

    @post("/{customer_id:uuid}/erase", status_code=200, summary="Erase a customer (crypto-shredding)",
          description="Destroys the customer's data key: its encrypted values in the tables, in audit event values "
                      "and in every backup become unreadable; personal text stored in clear is overwritten; the "
                      "record remains as a tombstone. Recorded in the audit trail and the erasure ledger.")
    async def erase(self, customer_id: FromPath[uuid.UUID], data: JSONBody[Erasure],
                    context: NamedDependency[CallContext]) -> dict[str, Any]:
        return await ErasureService(context).erase(customer_id, legal_basis=data.legal_basis)
