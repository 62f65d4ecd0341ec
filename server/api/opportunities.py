"""Opportunity endpoints: /api/v1/opportunities, and reopening won or lost ones."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody

from server.api.crud import etag, parse_if_match, record_controller
from server.api.schemas import UNSET, Currency, Input, LongText, Name, Probability, Unset, Version
from server.domain.opportunities import OPEN_STAGES, OPPORTUNITY, PipelineStage
from server.services.opportunities import OpportunityService
from server.services.records import CallContext

OpenStage = PipelineStage  # validated against OPEN_STAGES by the service


class OpportunityCreate(Input):
    customer_id: uuid.UUID
    title: Name
    amount: Decimal
    currency: Currency
    stage: PipelineStage = PipelineStage.QUALIFICATION
    probability: Probability | Unset = UNSET
    expected_close_date: date | None = None
    owner_id: uuid.UUID | None = None
    loss_reason: LongText | None = None


class OpportunityUpdate(Input):
    title: Name | Unset = UNSET
    amount: Decimal | Unset = UNSET
    currency: Currency | Unset = UNSET
    stage: PipelineStage | Unset = UNSET
    probability: Probability | Unset = UNSET
    expected_close_date: date | Unset | None = UNSET
    owner_id: uuid.UUID | Unset = UNSET
    loss_reason: LongText | Unset | None = UNSET
    version: Version | Unset = UNSET


class OpportunityRead(msgspec.Struct, kw_only=True):
    """An opportunity; ``amount`` is a decimal string. Hidden fields are absent."""

    id: uuid.UUID
    version: int
    created_at: datetime
    updated_at: datetime
    customer_id: uuid.UUID | Unset = UNSET
    title: str | Unset = UNSET
    amount: str | Unset = UNSET
    currency: str | Unset = UNSET
    stage: str | Unset = UNSET
    probability: int | Unset = UNSET
    expected_close_date: date | Unset | None = UNSET
    owner_id: uuid.UUID | Unset = UNSET
    loss_reason: str | Unset | None = UNSET
    closed_at: datetime | Unset | None = UNSET


class Reopen(Input):
    stage: OpenStage
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    version: Version | Unset = UNSET


OpportunityController = record_controller(
    path="/api/v1/opportunities", tag="opportunities", entity=OPPORTUNITY, service_type=OpportunityService,
    create_schema=OpportunityCreate, update_schema=OpportunityUpdate, read_schema=OpportunityRead,
)


class OpportunityReopenController(Controller):
    path = "/api/v1/opportunities"
    tags = ["opportunities"]

    @post("/{record_id:uuid}/reopen", status_code=200, summary="Reopen a won or lost opportunity",
          description=f"Moves it back to an open stage ({', '.join(sorted(s.value for s in OPEN_STAGES))}); "
                      "the stage history records who reopened it and why.")
    async def reopen(
        self,
        record_id: FromPath[uuid.UUID],
        data: JSONBody[Reopen],
        context: NamedDependency[CallContext],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[dict[str, Any]]:
        expected = parse_if_match(if_match, data.version)
        record = await OpportunityService(context).reopen(record_id, stage=data.stage.value,
                                                          expected_version=expected, reason=data.reason)
        return Response(record, headers=etag(record))
