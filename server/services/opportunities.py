"""Opportunity use cases: the pipeline, with every stage change in the stage history."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from server.domain.activities import Activity
from server.domain.base import utc_now
from server.domain.opportunities import (
    OPPORTUNITY,
    Opportunity,
    PipelineStage,
    StageChange,
    check_stage_change,
    default_probability,
)
from server.domain.opportunities.rules import TERMINAL_STAGES, check_amount
from server.errors import InvalidInput
from server.security.identity import User
from server.services.customers import CustomerService
from server.services.records import RecordService, refuse_if_dependents, require_reference, set_fields


class OpportunityService(RecordService[Opportunity]):
    """Create, read, move through the pipeline, reopen and delete opportunities."""

    entity = OPPORTUNITY
    model = Opportunity

    async def build(self, values: dict[str, Any]) -> Opportunity:
        await self.reference(CustomerService, values["customer_id"], "customer_id")
        check_amount(values["amount"])
        owner_id = values.get("owner_id") or self.principal.user_id
        if owner_id is None:
            raise InvalidInput("owner_id is required", field="owner_id")
        await require_reference(self.session, User, owner_id, "owner_id")
        stage = values.get("stage") or PipelineStage.QUALIFICATION.value
        if PipelineStage(stage) is PipelineStage.LOST and not (values.get("loss_reason") or "").strip():
            raise InvalidInput("loss_reason is required when an opportunity is lost", field="loss_reason")
        record = Opportunity()
        set_fields(record, {**values, "owner_id": owner_id, "stage": stage,
                            "probability": values.get("probability", default_probability(stage))})
        if PipelineStage(stage) in TERMINAL_STAGES:
            record.closed_at = utc_now()
        self.session.add(StageChange(opportunity_id=record.id, from_stage=None, to_stage=stage,
                                     changed_by=self.principal.id))
        return record

    async def change(self, record: Opportunity, changes: dict[str, Any]) -> None:
        if "amount" in changes:
            check_amount(changes["amount"])
        if "owner_id" in changes:
            await require_reference(self.session, User, changes["owner_id"], "owner_id")
        target = changes.get("stage")
        if target is not None and target != record.stage:
            check_stage_change(record.stage, target, loss_reason=changes.get("loss_reason", record.loss_reason))
            self._record_stage_change(record, target, reason=changes.get("loss_reason"))
            changes.setdefault("probability", default_probability(target))
        elif record.stage in {s.value for s in TERMINAL_STAGES} and changes:
            raise InvalidInput(f"a {record.stage} opportunity cannot be changed; reopen it first", field="stage")
        set_fields(record, changes)
        if PipelineStage(record.stage) is PipelineStage.LOST and not (record.loss_reason or "").strip():
            raise InvalidInput("loss_reason is required when an opportunity is lost", field="loss_reason")

    async def reopen(self, record_id: uuid.UUID, *, stage: str, expected_version: int, reason: str) -> dict[str, Any]:
        """Move a won or lost opportunity back to an open stage, explicitly."""

        async def apply(record: Opportunity) -> None:
            check_stage_change(record.stage, stage, loss_reason=None, reopening=True)
            self._record_stage_change(record, stage, reason=reason)
            record.stage = stage
            record.probability = default_probability(stage)
            record.loss_reason = None

        return await self.update_with(record_id, apply, expected_version=expected_version)

    async def check_delete(self, record: Opportunity) -> None:
        await refuse_if_dependents(self.session, "opportunity", {
            "activities": select(func.count()).select_from(Activity).where(Activity.opportunity_id == record.id),
        })

    def _record_stage_change(self, record: Opportunity, target: str, *, reason: str | None) -> None:
        self.session.add(StageChange(opportunity_id=record.id, from_stage=record.stage, to_stage=target,
                                     changed_by=self.principal.id, reason=reason))
        record.closed_at = utc_now() if PipelineStage(target) in TERMINAL_STAGES else None

