"""Opportunities: the sales pipeline, with a history of every stage change."""

from server.domain.opportunities.fields import OPPORTUNITY
from server.domain.opportunities.models import Opportunity, PipelineStage, StageChange
from server.domain.opportunities.rules import OPEN_STAGES, check_stage_change, default_probability

__all__ = [
    "OPEN_STAGES",
    "OPPORTUNITY",
    "Opportunity",
    "PipelineStage",
    "StageChange",
    "check_stage_change",
    "default_probability",
]
